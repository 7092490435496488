"""Per-pixel weights that fuse overlapping tiles' noise predictions, and the fusing. No Ray.

A fused render plans its tiles on the latent grid (`latent_plan`). At every step each
tile's noise prediction is weighted and summed into one prediction for the whole
canvas:

- 'uniform' (MultiDiffusion): every covering tile counts alike, 1 / coverage;
- 'gaussian' (Mixture of Diffusers): a tile's weight falls off from its centre as a
  Gaussian of standard deviation 0.1 x the tile side, so a tile's own borders count
  least where a neighbour overlaps them.

Each tile's raw weights are divided by the sum over all tiles covering a pixel, so
the weights sum to 1 at every latent pixel, and a pixel covered by one tile takes
that tile's prediction unchanged (its weight is exactly 1). `Fuser` adds the tiles in
their plan order whatever order they arrive in, so a step's result does not depend
on which replica answered first.
"""

from __future__ import annotations

import math

import numpy as np

from core.largeformat.fused_schemas import Fuse
from core.largeformat.tiling import Tile, TilePlan, plan_tiles

__all__ = ["GAUSSIAN_SIGMA", "FusionWeights", "Fuser", "latent_plan", "raw_weights"]

GAUSSIAN_SIGMA = 0.1
"""Standard deviation of the Gaussian weights as a fraction of the tile side (variance
0.01, as Mixture of Diffusers' reference implementation)."""


def latent_plan(
    width: int, height: int, tile_size: int, overlap: int | None, factor: int
) -> TilePlan:
    """The fused tiles of a `width` x `height` px canvas, in latent cells.

    The latent canvas covers the image (ceil(side / factor) cells); `tile_size` and
    `overlap` are pixels, multiples of `factor`; overlap defaults to 1/8 of the tile.
    Tiles keep the model's native size (the denoiser sees exactly it), spread evenly.
    """
    cells = None if overlap is None else overlap // factor
    latent_w, latent_h = -(-width // factor), -(-height // factor)
    return plan_tiles(latent_w, latent_h, tile_size // factor, cells, 1, shrink=False)


def raw_weights(height: int, width: int, fuse: Fuse) -> np.ndarray:
    """A tile's unnormalised weights, float64 (height, width)."""
    if fuse == "uniform":
        return np.ones((height, width))
    if fuse != "gaussian":
        raise ValueError(f"fuse must be 'gaussian' or 'uniform', got {fuse!r}")
    return np.outer(_gaussian(height), _gaussian(width))


def _gaussian(size: int) -> np.ndarray:
    offsets = (np.arange(size) - (size - 1) / 2) / size
    return np.exp(-(offsets**2) / (2 * GAUSSIAN_SIGMA**2)) / math.sqrt(
        2 * math.pi * GAUSSIAN_SIGMA**2
    )


class FusionWeights:
    """The normalised weights of every tile of a plan (float32, each (h, w))."""

    def __init__(self, plan: TilePlan, fuse: Fuse):
        self.plan = plan
        self.fuse = fuse
        total = np.zeros((plan.height, plan.width))
        raw = {}
        for tile in plan.tiles:
            shape = (tile.h, tile.w)
            if shape not in raw:
                raw[shape] = raw_weights(tile.h, tile.w, fuse)
            total[tile.y : tile.y + tile.h, tile.x : tile.x + tile.w] += raw[shape]
        self._weights = [
            (raw[(t.h, t.w)] / total[t.y : t.y + t.h, t.x : t.x + t.w]).astype(np.float32)
            for t in plan.tiles
        ]

    def tile(self, tile: Tile) -> np.ndarray:
        """The weights of `tile` (a tile of the plan), summing to 1 with its neighbours'."""
        return self._weights[tile.index]


class Fuser:
    """Sums weighted tile predictions of one step into the canvas, in plan order.

    Predictions may arrive in any order; each is added as soon as every tile before it
    in the plan has been, so the float sums are always done in the same order.
    """

    def __init__(self, weights: FusionWeights, channels: int):
        plan = weights.plan
        self._weights = weights
        self._canvas = np.zeros((channels, plan.height, plan.width), np.float32)
        self._waiting: dict[int, np.ndarray] = {}
        self._next = 0

    @property
    def done(self) -> bool:
        """Whether every tile of the plan has been added."""
        return self._next == len(self._weights.plan.tiles)

    def add(self, tile: Tile, prediction: np.ndarray) -> None:
        """Accept `tile`'s (C, h, w) prediction; add what is now next in plan order."""
        if tile.index < self._next or tile.index in self._waiting:
            raise ValueError(f"tile {tile.key} was already added")
        expected = (self._canvas.shape[0], tile.h, tile.w)
        if prediction.shape != expected:
            raise ValueError(f"tile {tile.key}: expected {expected}, got {prediction.shape}")
        self._waiting[tile.index] = prediction
        tiles = self._weights.plan.tiles
        while self._next in self._waiting:
            t = tiles[self._next]
            region = self._canvas[:, t.y : t.y + t.h, t.x : t.x + t.w]
            region += self._weights.tile(t) * self._waiting.pop(self._next)
            self._next += 1

    def result(self) -> np.ndarray:
        """The fused (C, H, W) prediction; every tile must have been added."""
        if not self.done:
            raise ValueError(f"{len(self._weights.plan.tiles) - self._next} tiles are missing")
        return self._canvas
