"""Tiled upscaling geometry: source tiles with context padding, and the upscaled canvas.

An upscaler network sees only the pixels it is given, so a tile upscaled on
its own differs from the whole-image result near its borders. Each source
tile is therefore cut with `padding` extra source pixels of context on every
side (clamped to the image), upscaled, and the padded border is cropped off
the result. The cropped tiles sit on the upscaled canvas on the source grid
scaled by `scale` (`scale_plan`), where `core.largeformat.assembler.RowAssembler` blends
their overlaps as for any other tiled render.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import RequestError
from core.largeformat.tiling import Tile, TilePlan, plan_tiles

__all__ = [
    "Box",
    "PaddedTile",
    "UpscalePlan",
    "UpscaleRequest",
    "UpscaleResult",
    "pad_tile",
    "plan_upscale",
    "scale_plan",
]


@dataclass(frozen=True)
class Box:
    """A pixel rectangle [x0, x1) x [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def cut(self, image: np.ndarray) -> np.ndarray:
        """The view of `image` (H, W, ...) inside the box."""
        return image[self.y0 : self.y1, self.x0 : self.x1]


@dataclass
class UpscaleRequest:
    """One image (or padded source tile) to upscale, and the crop to keep of the result."""

    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    crop: Box | None = None  # on the upscaled image; None keeps all of it
    key: str = ""  # names the tile in errors and logs


@dataclass
class UpscaleResult:
    """An upscaled (and cropped) image and where and how it was made."""

    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    compute_s: float
    replica: str
    gpu_ids: list[str]
    started_at: float = 0.0  # wall-clock start of the compute (time.time() on the replica)


@dataclass(frozen=True)
class PaddedTile:
    """A source tile, the padded source box sent to the upscaler, and the crop after."""

    tile: Tile  # on the source image
    box: Box  # source pixels sent: the tile plus context, clamped to the image
    crop: Box  # what to keep of the upscaled box: exactly the tile, scaled

    def request(self, image: np.ndarray) -> UpscaleRequest:
        """The upscale request of this tile, cut from the whole source `image`."""
        return UpscaleRequest(np.ascontiguousarray(self.box.cut(image)), self.crop, self.tile.key)


@dataclass(frozen=True)
class UpscalePlan:
    """Padded tiles on the source image and the plan of the upscaled canvas."""

    scale: int
    padding: int
    source: TilePlan
    canvas: TilePlan  # `source` scaled: canvas.tiles[i] is where tiles[i]'s result goes
    tiles: tuple[PaddedTile, ...]


def plan_upscale(
    width: int,
    height: int,
    scale: int,
    tile_size: int,
    padding: int = 10,
    overlap: int | None = None,
) -> UpscalePlan:
    """Plan a tiled upscale of a `width` x `height` source image by `scale`.

    Tiles are `tile_size` source pixels (smaller only along a shorter side),
    overlapping by `overlap` source pixels (default: 1/8 of the tile), each
    sent with `padding` source pixels of context.
    """
    if scale < 1:
        raise RequestError("scale", f"must be >= 1, got {scale}")
    if padding < 0:
        raise RequestError("padding", f"must be >= 0, got {padding}")
    source = plan_tiles(width, height, tile_size, overlap, align=1)
    tiles = tuple(pad_tile(tile, width, height, padding, scale) for tile in source.tiles)
    return UpscalePlan(scale, padding, source, scale_plan(source, scale), tiles)


def pad_tile(tile: Tile, width: int, height: int, padding: int, scale: int) -> PaddedTile:
    """Grow `tile` by `padding` on each side within the image; the crop that undoes it."""
    box = Box(
        max(tile.x - padding, 0),
        max(tile.y - padding, 0),
        min(tile.x + tile.w + padding, width),
        min(tile.y + tile.h + padding, height),
    )
    left, top = (tile.x - box.x0) * scale, (tile.y - box.y0) * scale
    crop = Box(left, top, left + tile.w * scale, top + tile.h * scale)
    return PaddedTile(tile, box, crop)


def scale_plan(plan: TilePlan, scale: int) -> TilePlan:
    """The same tile grid on a canvas `scale` times larger (every coordinate times `scale`)."""
    tiles = tuple(
        Tile(
            t.index,
            t.row,
            t.col,
            t.x * scale,
            t.y * scale,
            t.w * scale,
            t.h * scale,
            t.w * scale,
            t.h * scale,
        )
        for t in plan.tiles
    )
    return TilePlan(
        width=plan.width * scale,
        height=plan.height * scale,
        tile_w=plan.tile_w * scale,
        tile_h=plan.tile_h * scale,
        overlap=plan.overlap * scale,
        align=plan.align * scale,
        xs=tuple(x * scale for x in plan.xs),
        ys=tuple(y * scale for y in plan.ys),
        widths=tuple(w * scale for w in plan.widths),
        heights=tuple(h * scale for h in plan.heights),
        tiles=tiles,
        rows=plan.rows,
        cols=plan.cols,
        redundancy=plan.redundancy,
    )
