"""Streaming gatherer: blends tiles into final canvas row bands as they arrive.

A canvas row is final once every tile overlapping it has arrived. Tiles are
kept (as the uint8 pixels received, or as float32 contributions in
multi-band mode) only until the rows they cover are emitted; once the top of
a tile row is emitted only its still-needed bottom strip is kept. With tiles
arriving roughly row by row, memory is about one tile row plus one overlap
strip: it depends on the canvas width, never on its height. Tiles that
arrive ahead of the first unfinished row are kept until then; the router
sends no tile more than a few tile rows below the first row with a tile still
out (`core.largeformat.fanout.rows_ahead`), which bounds how many. Final rows come out in bands of
at most `BAND_BYTES`, each blended only when the caller takes it, so however
many tile rows complete at once only one band need be in memory.

Blending happens when a band is emitted, in a fixed order, so the bytes do
not depend on the order in which tiles arrived. The canvas is cut at every
tile edge into pieces covered by the same tiles: a piece covered by one tile
is copied unchanged (its weight is exactly 1); others are mixed across
columns, then across rows, with the weights of `core.largeformat.blending.axis_weights`
(the separable factors of `tile_weights`), rounding to uint8 after each mix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.largeformat.blending import Ramp, axis_weights, multiband_contribution
from core.largeformat.mixing import mix_columns, mix_rows
from core.largeformat.tiling import Tile, TilePlan, plan_tiles

__all__ = ["BAND_BYTES", "RowAssembler", "warm_up"]

BAND_BYTES = 2 * 2**20  # the most bytes of one emitted band (one canvas row at least)

Blend = Literal["feather", "multiband"]


@dataclass(frozen=True)
class _Span:
    """A piece of one axis covered by the same tiles, with each tile's weights over it."""

    start: int
    stop: int
    members: tuple[int, ...]  # grid rows (or columns) covering the span
    sources: tuple[tuple[int, slice], ...]  # (member, the span's slice of its tile)
    weights: tuple[np.ndarray, ...]  # one array per member, see `_spans`


class RowAssembler:
    """Accepts tiles in any order (`put`); yields final canvas row bands top to bottom
    (`bands`); `add` does both.

    `blend="multiband"` blends `levels` frequency bands (see
    `core.largeformat.blending.multiband_contribution`): slower, and it holds float32
    contributions (4x the bytes) instead of the tiles' uint8 pixels.
    """

    def __init__(
        self,
        plan: TilePlan,
        channels: int = 3,
        ramp: Ramp = "cosine",
        blend: Blend = "feather",
        levels: int = 4,
        band_bytes: int = BAND_BYTES,
    ):
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if blend not in ("feather", "multiband"):
            raise ValueError(f"blend must be 'feather' or 'multiband', got {blend!r}")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self._plan = plan
        self._channels = channels
        self._ramp = ramp
        self._blend = blend
        self._levels = levels
        self._band_rows = max(1, band_bytes // (plan.width * channels))
        self._x_spans = _spans(plan.xs, plan.widths, plan.width, ramp, channels)
        self._y_spans = _spans(plan.ys, plan.heights, plan.height, ramp, None)
        self._x_table = _pieces_table(self._x_spans, channels)
        self._arrived = [False] * len(plan.tiles)
        self._held: dict[int, np.ndarray] = {}
        self._missing = [plan.cols] * plan.rows
        self._next_span = 0
        self._next_release = 0
        self._trimmed = [0] * plan.rows  # leading rows dropped from each grid row's tiles
        self._rows_emitted = 0
        self._held_bytes = 0
        self._peak_held_bytes = 0

    @property
    def done(self) -> bool:
        """Whether every canvas row has been emitted."""
        return self._rows_emitted == self._plan.height

    @property
    def rows_emitted(self) -> int:
        """Canvas rows emitted so far (the next band starts there)."""
        return self._rows_emitted

    @property
    def peak_held_bytes(self) -> int:
        """The most bytes of tile data held at once (a memory bound for tests and metrics)."""
        return self._peak_held_bytes

    def add(self, tile: Tile, pixels: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """`put` the tile, then return every band now final (see `bands`) in a list."""
        self.put(tile, pixels)
        return list(self.bands())

    def put(self, tile: Tile, pixels: np.ndarray) -> None:
        """Accept one tile's uint8 (h, w, C) pixels (any order).

        The pixels are kept by reference until their rows are emitted: do not modify them.
        """
        plan = self._plan
        if not 0 <= tile.index < len(plan.tiles) or plan.tiles[tile.index] != tile:
            raise ValueError(f"tile {tile.key} is not part of this plan")
        if self._arrived[tile.index]:
            raise ValueError(f"tile {tile.key} was already added")
        expected = (tile.h, tile.w, self._channels)
        if pixels.shape != expected or pixels.dtype != np.uint8:
            raise ValueError(
                f"tile {tile.key}: expected uint8 pixels of shape {expected}, "
                f"got {pixels.dtype} {pixels.shape}"
            )
        if self._blend == "multiband":
            pixels = multiband_contribution(plan, tile, pixels, self._levels, self._ramp)
        held = np.ascontiguousarray(pixels).reshape(tile.h, tile.w * self._channels)
        self._arrived[tile.index] = True
        self._held[tile.index] = held
        self._held_bytes += held.nbytes
        self._peak_held_bytes = max(self._peak_held_bytes, self._held_bytes)
        self._missing[tile.row] -= 1

    def bands(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield the canvas row bands that are final now, top to bottom, one at a time.

        Each is (y0, uint8 array (y1 - y0, width, C)) of at most `band_bytes` (one row
        at least) within one y span, blended when the iteration reaches it; each canvas
        row comes exactly once, bands contiguous from y=0. Tiles are released as their
        rows are emitted, so drop each band before taking the next to hold only one.
        """
        spans = self._y_spans
        while self._next_span < len(spans) and not any(
            self._missing[r] for r in spans[self._next_span].members
        ):
            span = spans[self._next_span]
            y0 = self._rows_emitted
            y1 = min(span.stop, y0 + self._band_rows)
            band = self._blend_band(_part(span, y0, y1))
            self._rows_emitted = y1
            if y1 == span.stop:
                self._next_span += 1
                self._release_rows(y1)
            yield y0, band
            del band  # before the next one is blended
        self._trim(self._rows_emitted)

    def _blend_band(self, y_span: _Span) -> np.ndarray:
        """The blended canvas rows of one (part of a) y span, (n, width, C) uint8."""
        n = y_span.stop - y_span.start
        band = np.empty((n, self._plan.width, self._channels), np.uint8)
        rows = band.reshape(n, -1)
        sources = self._row_sources(y_span)
        if self._blend == "feather" and self._x_table is not None and len(sources) <= 2:
            self._blend_rows(y_span, sources, rows)
            return band
        for x_span in self._x_spans:
            out = rows[:, x_span.start * self._channels : x_span.stop * self._channels]
            if self._blend == "feather":
                self._feather(sources, y_span.weights, x_span, out)
            else:
                self._sum_contributions(sources, x_span, out)
        return band

    def _row_sources(self, y_span: _Span) -> list[tuple[int, slice]]:
        """For each grid row covering a y span: its first tile index, the span's tile rows."""
        return [
            (
                row * self._plan.cols,
                slice(rows.start - self._trimmed[row], rows.stop - self._trimmed[row]),
            )
            for row, rows in y_span.sources
        ]

    def _blend_rows(
        self, y_span: _Span, row_sources: list[tuple[int, slice]], out: np.ndarray
    ) -> None:
        """Blend a y span's full width, piece by piece along each covering tile row.

        For plans where at most two tiles overlap along x: a piece one tile
        covers is copied, two are mixed by the compiled kernel; two tile rows
        are blended across columns apart, then mixed across rows.
        """
        singles, pairs, weights = self._x_table
        layers = []
        for first, tile_rows in row_sources:
            layer = out if len(row_sources) == 1 else np.empty_like(out)
            held = self._held
            for start, stop, col, offset in singles:
                layer[:, start:stop] = held[first + col][tile_rows, offset : offset + stop - start]
            for start, stop, col_a, off_a, col_b, off_b in pairs:
                n = stop - start
                mix_columns(
                    held[first + col_a][tile_rows, off_a : off_a + n],
                    held[first + col_b][tile_rows, off_b : off_b + n],
                    weights[start:stop],
                    layer[:, start:stop],
                )
            layers.append(layer)
        if len(layers) == 2:
            mix_rows(layers[0], layers[1], y_span.weights[0], out)

    def _feather(
        self,
        row_sources: list[tuple[int, slice]],
        row_weights: tuple[np.ndarray, ...],
        x_span: _Span,
        out: np.ndarray,
    ) -> None:
        """Blend the tiles covering one piece of the canvas into `out` (n, m * C).

        Across columns first, then across rows; a tile row covering the piece
        alone is used as it is.
        """
        rows = []
        for first, tile_rows in row_sources:
            pieces = [self._held[first + col][tile_rows, part] for col, part in x_span.sources]
            if len(row_sources) == 1:
                _mix(pieces, x_span.weights, out, mix_columns)
                return
            if len(pieces) == 1:
                rows.append(pieces[0])
            else:
                rows.append(np.empty_like(out))
                _mix(pieces, x_span.weights, rows[-1], mix_columns)
        _mix(rows, row_weights, out, mix_rows)

    def _sum_contributions(
        self, row_sources: list[tuple[int, slice]], x_span: _Span, out: np.ndarray
    ) -> None:
        """Sum the multi-band contributions (weights applied) covering one piece into `out`."""
        total = np.zeros(out.shape, np.float32)
        for first, tile_rows in row_sources:
            for col, part in x_span.sources:
                total += self._held[first + col][tile_rows, part]
        np.clip(np.rint(total, out=total), 0, 255, out=total)
        np.copyto(out, total, casting="unsafe")

    def _release_rows(self, y: int) -> None:
        """Drop the tile rows that lie wholly above canvas row `y`."""
        plan = self._plan
        while (
            self._next_release < plan.rows
            and plan.ys[self._next_release] + plan.heights[self._next_release] <= y
        ):
            start = self._next_release * plan.cols
            for index in range(start, start + plan.cols):
                self._held_bytes -= self._held.pop(index).nbytes
            self._next_release += 1

    def _trim(self, y: int) -> None:
        """Keep only the rows from canvas row `y` down of the tiles that started above it."""
        plan = self._plan
        for row in range(self._next_release, plan.rows):
            if plan.ys[row] >= y:
                break
            drop = y - plan.ys[row] - self._trimmed[row]
            if not drop:
                continue
            for index in range(row * plan.cols, (row + 1) * plan.cols):
                kept = self._held[index][drop:].copy()
                self._held_bytes += kept.nbytes - self._held[index].nbytes
                self._held[index] = kept
            self._trimmed[row] += drop


def _mix(
    pieces: list[np.ndarray],
    weights: tuple[np.ndarray, ...],
    out: np.ndarray,
    pair_kernel: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None],
) -> None:
    """Write the weighted sum of uint8 `pieces` into `out`, rounded to the nearest level.

    One piece (weight exactly 1) is copied. Two, the common case, are mixed in
    8-bit fixed point by `pair_kernel` (`core.largeformat.mixing`), the first
    piece's weights given, the second's being 256 minus them: within 1 level
    of the float blend. More are summed in float32.
    """
    if len(pieces) == 1:
        out[...] = pieces[0]
        return
    if len(pieces) == 2:
        pair_kernel(pieces[0], pieces[1], weights[0], out)
        return
    total = np.zeros(out.shape, np.float32)
    for piece, weight in zip(pieces, weights, strict=True):
        total += piece * weight
    np.rint(total, out=total)
    np.copyto(out, total, casting="unsafe")


def _spans(
    origins: tuple[int, ...],
    sizes: tuple[int, ...],
    length: int,
    ramp: Ramp,
    channels: int | None,
) -> list[_Span]:
    """Split [0, length) at every tile edge, with the covering tiles' weights over each piece.

    Along x (`channels` given) positions are counted in values of a flat
    (width * C) row and weights repeat per channel; along y weights are
    columns. Pairs get the first tile's fixed-point weights, one per value (see `_mix`),
    others float32.
    """
    axis = axis_weights(origins, sizes, length, ramp)
    ends = [o + size for o, size in zip(origins, sizes, strict=True)]
    edges = sorted({0, length, *origins, *ends})
    spans = []
    for a, b in zip(edges, edges[1:], strict=False):
        members = tuple(i for i, o in enumerate(origins) if o <= a < ends[i])
        weights = [axis[i][a - origins[i] : b - origins[i]] for i in members]
        if len(members) == 2:
            first = np.rint(weights[0] * 256).astype(np.uint16)
            weights = [first if channels is None else np.repeat(first, channels)]
        elif channels is None:
            weights = [w[:, None] for w in weights]
        else:
            weights = [np.repeat(w, channels) for w in weights]
        if channels is None:
            sources = tuple((i, slice(a - origins[i], b - origins[i])) for i in members)
        else:
            sources = tuple(
                (i, slice((a - origins[i]) * channels, (b - origins[i]) * channels))
                for i in members
            )
        spans.append(_Span(a, b, members, sources, tuple(weights)))
    return spans


def _part(span: _Span, start: int, stop: int) -> _Span:
    """Rows [start, stop) of a y span: its tiles' rows and weights over them."""
    if (start, stop) == (span.start, span.stop):
        return span
    a, b = start - span.start, stop - span.start
    sources = tuple(
        (member, slice(rows.start + a, rows.start + b)) for member, rows in span.sources
    )
    return _Span(start, stop, span.members, sources, tuple(w[a:b] for w in span.weights))


SinglePiece = tuple[int, int, int, int]
PairPiece = tuple[int, int, int, int, int, int]
XTable = tuple[list[SinglePiece], list[PairPiece], np.ndarray]


def _pieces_table(x_spans: list[_Span], channels: int) -> XTable | None:
    """The width's pieces for `_blend_rows`, or None where more than two tiles overlap.

    Pieces one tile covers: (start, stop, column, offset) in flat row values;
    pairs: (start, stop, first column, its offset, second column, its offset);
    and the first tile's fixed-point weights of every pair, over the whole width.
    """
    if any(len(span.members) > 2 for span in x_spans):
        return None
    singles, pairs = [], []
    weights = np.zeros(x_spans[-1].stop * channels, np.uint16)
    for span in x_spans:
        start, stop = span.start * channels, span.stop * channels
        (col_a, part_a), *rest = span.sources
        if not rest:
            singles.append((start, stop, col_a, part_a.start))
            continue
        col_b, part_b = rest[0]
        pairs.append((start, stop, col_a, part_a.start, col_b, part_b.start))
        weights[start:stop] = span.weights[0]
    return singles, pairs, weights


def warm_up() -> None:
    """Blend a tiny canvas once, so that the compiled kernels (`core.largeformat.mixing`)
    are loaded for the array layouts real jobs pass: about 0.6 s in a fresh process,
    better spent when a router starts than on its first tiles."""
    plan = plan_tiles(72, 72, 40, 8)
    assembler = RowAssembler(plan)
    for tile in plan.tiles:
        assembler.add(tile, np.zeros((tile.h, tile.w, 3), np.uint8))
