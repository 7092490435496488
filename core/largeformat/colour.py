"""Colour harmonisation of refined tiles against the base image under them.

An img2img refine drifts each tile's overall colour a little differently,
which shows as tile patches after blending. Replacing a tile's low
frequencies (its colour at a scale of `scale` pixels) with the base image's
keeps the refined detail and removes the drift.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["match_low_frequency"]


def match_low_frequency(tile: np.ndarray, reference: np.ndarray, scale: int = 16) -> np.ndarray:
    """The tile with its low frequencies replaced by the reference's; uint8 (H, W, C)."""
    if tile.shape != reference.shape or tile.ndim != 3:
        raise ValueError(
            f"tile and reference must both be (H, W, C) of one shape, "
            f"got {tile.shape} and {reference.shape}"
        )
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    matched = tile.astype(np.float32) - _low_pass(tile, scale) + _low_pass(reference, scale)
    return np.clip(np.rint(matched), 0, 255).astype(np.uint8)


def _low_pass(image: np.ndarray, scale: int) -> np.ndarray:
    """Box-downsample by `scale`, then bilinear-upsample back; float32 (H, W, C)."""
    h, w = image.shape[:2]
    small = (max(1, -(-w // scale)), max(1, -(-h // scale)))
    out = np.empty(image.shape, np.float32)
    for c in range(image.shape[2]):
        channel = Image.fromarray(image[:, :, c].astype(np.float32))
        reduced = channel.resize(small, Image.Resampling.BOX)
        out[:, :, c] = np.asarray(reduced.resize((w, h), Image.Resampling.BILINEAR))
    return out
