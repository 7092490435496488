"""Tile planning for large-format renders: where each tile sits on the canvas.

Along each axis the plan takes as few tiles as the model's native size (a
multiple of the latent alignment) allows with at least `overlap` pixels
between neighbours, then shrinks them to the smallest aligned size that still
covers the canvas with that overlap, and spreads them evenly: every overlap is
the same to a pixel, and no tile computes more than the canvas needs (a side
that needs 2.1 native tiles gets 3 tiles of about 0.8 native, not 3 whole ones
with the last shifted back over its neighbour). They cover the canvas exactly,
never padding the output. A canvas side shorter than one tile gets a single
tile spanning it; the model then renders it rounded up to the alignment
(`render_w` / `render_h`) and the router crops the result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from core.errors import RequestError

__all__ = ["Tile", "TilePlan", "plan_tiles", "tile_seed"]


@dataclass(frozen=True)
class Tile:
    """One tile: its place in the grid, its canvas rectangle and its render size."""

    index: int
    row: int
    col: int
    x: int
    y: int
    w: int
    h: int
    render_w: int
    render_h: int

    @property
    def key(self) -> str:
        """Stable name of the tile, e.g. "r0c3"."""
        return f"r{self.row}c{self.col}"


@dataclass(frozen=True)
class TilePlan:
    """The tiles covering a `width` x `height` canvas, row-major.

    `tile_w` / `tile_h` are the requested (native) tile size, the largest a
    tile is; every tile has the same size (`tiles[0].w` x `tiles[0].h`).
    `redundancy` is the tile area processed divided by the canvas area.
    """

    width: int
    height: int
    tile_w: int
    tile_h: int
    overlap: int
    align: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]
    tiles: tuple[Tile, ...]
    rows: int
    cols: int
    redundancy: float

    def tiles_in_row(self, row: int) -> tuple[Tile, ...]:
        """The tiles of one grid row, left to right."""
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} is outside the plan's {self.rows} rows")
        return self.tiles[row * self.cols : (row + 1) * self.cols]


def plan_tiles(
    width: int,
    height: int,
    tile_size: int | tuple[int, int],
    overlap: int | None = None,
    align: int = 8,
    shrink: bool = True,
) -> TilePlan:
    """Plan the tiles of a canvas.

    `tile_size` is the model's native resolution, an int or (width, height),
    each a multiple of `align` and the largest a tile may be; `overlap` (the
    least between neighbours) defaults to 1/8 of the smaller tile side rounded
    to the alignment. `shrink=False` keeps every tile at the native size
    (spread evenly all the same), for a model that must see exactly that size.
    """
    tile_w, tile_h = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    _check_inputs(width, height, tile_w, tile_h, align)
    if overlap is None:
        overlap = int(min(tile_w, tile_h) / 8 / align + 0.5) * align
    if not 0 <= overlap < min(tile_w, tile_h):
        raise RequestError(
            "overlap",
            f"must be >= 0 and smaller than the tile size {tile_w}x{tile_h}, got {overlap}",
        )
    xs, w, render_w = _axis(width, tile_w, overlap, align, shrink)
    ys, h, render_h = _axis(height, tile_h, overlap, align, shrink)
    tiles = tuple(
        Tile(r * len(xs) + c, r, c, x, y, w, h, render_w, render_h)
        for r, y in enumerate(ys)
        for c, x in enumerate(xs)
    )
    return TilePlan(
        width=width,
        height=height,
        tile_w=tile_w,
        tile_h=tile_h,
        overlap=overlap,
        align=align,
        xs=xs,
        ys=ys,
        tiles=tiles,
        rows=len(ys),
        cols=len(xs),
        redundancy=len(tiles) * w * h / (width * height),
    )


def tile_seed(job_seed: int, tile: Tile) -> int:
    """The tile's seed, derived from the job seed and its grid position, in [0, 2**63)."""
    digest = hashlib.blake2b(f"{job_seed}:{tile.row}:{tile.col}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _check_inputs(width: int, height: int, tile_w: int, tile_h: int, align: int) -> None:
    for name, value in (("width", width), ("height", height), ("align", align)):
        if value < 1:
            raise RequestError(name, f"must be >= 1, got {value}")
    for value in (tile_w, tile_h):
        if value < align or value % align:
            raise RequestError(
                "tile_size",
                f"must be a positive multiple of the alignment {align}, got {tile_w}x{tile_h}",
            )


def _axis(
    length: int, tile: int, overlap: int, align: int, shrink: bool
) -> tuple[tuple[int, ...], int, int]:
    """Tile origins along one axis, the tile extent on the canvas and its render size.

    The fewest tiles of at most `tile` with `overlap`; then the smallest
    aligned extent (with `shrink`) with which that many still overlap by at
    least `overlap` with origins spread evenly (the last one at the canvas
    edge). The native tile with a fixed stride is the fallback.
    """
    if length <= tile:
        return (0,), length, -(-length // align) * align
    stride = tile - overlap
    count = -(-(length - overlap) // stride)
    needed = -(-(length + (count - 1) * overlap) // count)
    smallest = -(-needed // align) * align if shrink else tile
    for size in range(smallest, tile + 1, align):
        origins = _spread(length, size, count, align)
        if all(b - a <= size - overlap for a, b in zip(origins, origins[1:], strict=False)):
            return origins, size, size
    return tuple(i * stride for i in range(count - 1)) + (length - tile,), tile, tile


def _spread(length: int, size: int, count: int, align: int) -> tuple[int, ...]:
    """`count` origins from 0 to `length - size`, evenly spaced.

    On a canvas side that is a multiple of the alignment, they stay on its grid.
    """
    last = length - size
    step = align if length % align == 0 else 1
    inner = (i * last // (count - 1) // step * step for i in range(1, count - 1))
    return (0, *inner, last)
