"""Blend weights for overlapping tiles.

Feathering is separable: along each axis a tile's weight ramps across its
overlap with each actual neighbour (cosine by default) and is 1 in its
interior and along the canvas edges. The weights are normalised per axis, so
the weights of all tiles sum to 1 at every canvas pixel, also where a heavy
overlap has a tile overlap more than one neighbour.

The multi-band blend splits a tile into band-pass layers (a Laplacian stack)
and blends fine layers over a narrow band at the centre of each overlap and
coarse layers over the whole overlap, so that detail does not ghost while
colour still fades smoothly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from core.largeformat.tiling import Tile, TilePlan

__all__ = ["Ramp", "axis_weights", "multiband_contribution", "tile_weights"]

Ramp = Literal["cosine", "linear"]


def tile_weights(plan: TilePlan, tile: Tile, ramp: Ramp = "cosine") -> np.ndarray:
    """The tile's feathering weights, float32 (h, w)."""
    wy = axis_weights(plan.ys, plan.heights, plan.height, ramp)[tile.row]
    wx = axis_weights(plan.xs, plan.widths, plan.width, ramp)[tile.col]
    return np.outer(wy, wx)


def axis_weights(
    origins: tuple[int, ...],
    sizes: int | tuple[int, ...],
    length: int,
    ramp: Ramp = "cosine",
    fraction: float = 1.0,
) -> list[np.ndarray]:
    """1D weights (float32, as long as its tile) of each tile along one axis.

    `sizes` is each tile's size, or one size for all. Each overlap gets a ramp
    `fraction` of its width long, centred in it; the weights of the tiles
    covering any position sum to 1.
    """
    if ramp not in ("cosine", "linear"):
        raise ValueError(f"ramp must be 'cosine' or 'linear', got {ramp!r}")
    if isinstance(sizes, int):
        sizes = (sizes,) * len(origins)
    raw = [np.ones(size) for size in sizes]
    for i in range(len(origins) - 1):
        width = origins[i] + sizes[i] - origins[i + 1]
        if width > 0:
            rising = _rising(width, max(1, round(width * fraction)), ramp)
            raw[i + 1][:width] *= rising
            raw[i][sizes[i] - width :] *= 1.0 - rising
    total = np.zeros(length)
    for origin, weights in zip(origins, raw, strict=True):
        total[origin : origin + len(weights)] += weights
    return [
        (w / total[o : o + len(w)]).astype(np.float32) for o, w in zip(origins, raw, strict=True)
    ]


def multiband_contribution(
    plan: TilePlan, tile: Tile, pixels: np.ndarray, levels: int = 4, ramp: Ramp = "cosine"
) -> np.ndarray:
    """The tile's weighted multi-band contribution, float32 (h, w, C).

    Summing the contributions of all tiles gives the blended canvas. Band k
    (0 = finest) is blended over 1/2**(levels-1-k) of each overlap. Bands are
    split within the tile (mirrored at its borders), so identical tiles give
    back their source to within about a level, not bit-exactly; it costs
    about 0.2 s of CPU per 512 x 512 tile.
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    out = np.zeros(pixels.shape, np.float32)
    current = pixels.astype(np.float32)
    for k in range(levels):
        fraction = 0.5 ** (levels - 1 - k)
        wy = axis_weights(plan.ys, plan.heights, plan.height, ramp, fraction)[tile.row]
        wx = axis_weights(plan.xs, plan.widths, plan.width, ramp, fraction)[tile.col]
        weights = np.outer(wy, wx)[:, :, None]
        if k == levels - 1:
            out += weights * current
        else:
            blurred = _blur(current, 2**k)
            out += weights * (current - blurred)
            current = blurred
    return out


def _rising(width: int, ramp_width: int, ramp: Ramp) -> np.ndarray:
    """0 -> 1 across an overlap of `width` pixels, ramping over `ramp_width` centred ones."""
    t = (np.arange(ramp_width) + 0.5) / ramp_width
    values = 0.5 - 0.5 * np.cos(np.pi * t) if ramp == "cosine" else t
    start = (width - ramp_width) // 2
    return np.concatenate([np.zeros(start), values, np.ones(width - start - ramp_width)])


def _blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Approximately Gaussian blur (sigma ~ radius): two box passes along each axis."""
    for axis in (0, 1):
        for _ in range(2):
            image = _box(image, radius, axis)
    return image


def _box(image: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over a (2 * radius + 1) window along `axis`, mirroring at the borders."""
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius + 1, radius)
    sums = np.cumsum(np.pad(image, pad, mode="symmetric"), axis=axis, dtype=np.float32)
    n = image.shape[axis]
    upper = sums[(slice(None),) * axis + (slice(2 * radius + 1, 2 * radius + 1 + n),)]
    lower = sums[(slice(None),) * axis + (slice(0, n),)]
    out = upper - lower
    out *= 1.0 / (2 * radius + 1)
    return out
