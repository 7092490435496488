"""Tile planning for large-format renders: where each tile sits on the canvas.

Along each axis the plan takes as few tiles as the model's native size (a
multiple of the latent alignment) allows with at least `overlap` pixels
between neighbours, then shrinks them so that together they are the fewest
aligned pixels that still cover the canvas with that overlap, and spreads them
evenly: tile sizes differ by at most one alignment step, overlaps by at most
one step, and no tile computes more than the canvas needs (a side that needs
2.1 native tiles gets 3 tiles of about 0.8 native, not 3 whole ones with the
last shifted back over its neighbour). Tiles of a grid column share a width,
tiles of a grid row a height. They cover the canvas exactly, never padding the
output. A canvas side shorter than one tile gets a single tile spanning it;
the model then renders it rounded up to the alignment (`render_w` /
`render_h`) and the router crops the result.
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
    tile is; `widths[col]` / `heights[row]` are each grid column's and row's
    tile size on the canvas. `redundancy` is the tile area processed divided
    by the canvas area.
    """

    width: int
    height: int
    tile_w: int
    tile_h: int
    overlap: int
    align: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]
    widths: tuple[int, ...]
    heights: tuple[int, ...]
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
    xs, widths, render_ws = _axis(width, tile_w, overlap, align, shrink)
    ys, heights, render_hs = _axis(height, tile_h, overlap, align, shrink)
    tiles = tuple(
        Tile(r * len(xs) + c, r, c, x, y, widths[c], heights[r], render_ws[c], render_hs[r])
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
        widths=widths,
        heights=heights,
        tiles=tiles,
        rows=len(ys),
        cols=len(xs),
        redundancy=sum(widths) * sum(heights) / (width * height),
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
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Tile origins along one axis, each tile's extent on the canvas and its render size.

    The fewest tiles of at most `tile` with `overlap`. With `shrink`, their
    sizes add up to the fewest aligned pixels that cover the side with that
    overlap, shared out evenly (the first ones one step larger); otherwise
    each is `tile`. Then the spare overlap is shared out evenly between the
    gaps (on the alignment grid where the side is a multiple of it).
    """
    if length <= tile:
        return (0,), (length,), (-(-length // align) * align,)
    count = -(-(length - overlap) // (tile - overlap))
    if shrink:
        units = -(-(length + (count - 1) * overlap) // align)
        base, extra = divmod(units, count)
        sizes = tuple((base + (i < extra)) * align for i in range(count))
    else:
        sizes = (tile,) * count
    gaps = _share(sum(sizes) - length, count - 1, align if length % align == 0 else 1)
    if min(gaps) < overlap:
        gaps = _share(sum(sizes) - length, count - 1, 1)
    origins = [0]
    for size, gap in zip(sizes, gaps, strict=False):
        origins.append(origins[-1] + size - gap)
    return tuple(origins), sizes, sizes


def _share(total: int, parts: int, step: int) -> tuple[int, ...]:
    """`total` split into `parts` multiples of `step` as evenly as possible, larger ones
    first; the remainder below one step goes to the first part."""
    units, rest = divmod(total, step)
    base, extra = divmod(units, parts)
    shares = [(base + (i < extra)) * step for i in range(parts)]
    shares[0] += rest
    return tuple(shares)
