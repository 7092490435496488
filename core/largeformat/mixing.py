"""Compiled kernels that mix two overlapping uint8 tiles into a canvas piece.

A mix is `(a * w + b * (256 - w) + 128) >> 8` per value, with 8-bit fixed-point
weights `w` in [0, 256] (one per column or one per row): one pass over the
pieces, writing `out` in place. numba compiles them (cached on disk) because
the same arithmetic in numpy takes six passes and temporaries: about 7x
slower on a 256 x 96 overlap (`bench/bench_blend.py` prints both).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["mix_columns", "mix_rows"]


@numba.njit(cache=True, nogil=True)
def mix_columns(a: np.ndarray, b: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """out[i, j] = mix of a[i, j] and b[i, j] with `weights[j]` for `a` (2-D uint8)."""
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            w = np.int32(weights[j])
            out[i, j] = (np.int32(a[i, j]) * w + np.int32(b[i, j]) * (256 - w) + 128) >> 8


@numba.njit(cache=True, nogil=True)
def mix_rows(a: np.ndarray, b: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """out[i, j] = mix of a[i, j] and b[i, j] with `weights[i]` for `a` (2-D uint8)."""
    rows, cols = out.shape
    for i in range(rows):
        w = np.int32(weights[i])
        for j in range(cols):
            out[i, j] = (np.int32(a[i, j]) * w + np.int32(b[i, j]) * (256 - w) + 128) >> 8
