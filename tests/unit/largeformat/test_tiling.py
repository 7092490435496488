import math

import numpy as np
import pytest

from core.errors import RequestError
from core.largeformat.tiling import plan_tiles, tile_seed

AWKWARD = [
    # width, height, tile size, overlap
    (3001, 1237, 512, None),
    (17, 9000, 512, None),
    (1, 1, 64, None),
    (100, 60, 512, None),  # smaller than one tile on both sides
    (65, 64, 64, 8),  # a 1-pixel remainder: two tiles of 40
    (121, 121, 64, 8),  # two strides plus overlap plus 1 pixel
    (113, 113, 64, 16),  # three tiles of 48
    (4096, 1024, 512, None),
    (1000, 300, (128, 64), 16),  # rectangular tiles
    (250, 250, 64, 0),  # abutting tiles
]


@pytest.mark.parametrize(("width", "height", "tile", "overlap"), AWKWARD)
def test_tiles_cover_the_canvas_exactly(width, height, tile, overlap):
    plan = plan_tiles(width, height, tile, overlap)
    coverage = np.zeros((height, width), np.int32)
    for t in plan.tiles:
        assert 0 <= t.x and t.x + t.w <= width
        assert 0 <= t.y and t.y + t.h <= height
        coverage[t.y : t.y + t.h, t.x : t.x + t.w] += 1
    assert coverage.min() >= 1
    assert plan.redundancy == pytest.approx(coverage.sum() / (width * height))


@pytest.mark.parametrize(("width", "height", "tile", "overlap"), AWKWARD)
def test_tile_sizes_are_aligned_shared_by_column_and_row_and_never_pad(
    width, height, tile, overlap
):
    plan = plan_tiles(width, height, tile, overlap, align=8)
    tile_w, tile_h = (tile, tile) if isinstance(tile, int) else tile
    for sizes in (plan.widths, plan.heights):
        assert max(sizes) - min(sizes) <= 8  # shared out evenly, one step apart at most
    for t in plan.tiles:
        assert (t.w, t.h) == (plan.widths[t.col], plan.heights[t.row])
        assert t.w <= min(tile_w, width) and t.h <= min(tile_h, height)
        assert t.render_w % 8 == 0 and t.render_h % 8 == 0
        assert 0 <= t.render_w - t.w < 8 and 0 <= t.render_h - t.h < 8
        if width > tile_w:
            assert t.render_w == t.w


@pytest.mark.parametrize(("width", "height", "tile", "overlap"), AWKWARD)
def test_origins_are_minimal_and_overlap_at_least_the_requested_amount(
    width, height, tile, overlap
):
    plan = plan_tiles(width, height, tile, overlap)
    for origins, length, sizes, native in (
        (plan.xs, width, plan.widths, plan.tile_w),
        (plan.ys, height, plan.heights, plan.tile_h),
    ):
        assert origins[0] == 0 and origins[-1] + sizes[-1] == length
        overlaps = [a + size - b for a, b, size in zip(origins, origins[1:], sizes, strict=False)]
        assert all(plan.overlap <= o < size for o, size in zip(overlaps, sizes, strict=False))
        expected = (
            1 if length <= native else math.ceil((length - plan.overlap) / (native - plan.overlap))
        )
        assert len(origins) == expected  # as few tiles as native ones would take
        if len(origins) > 1:  # together the fewest aligned pixels that cover the side
            assert sum(sizes) % 8 == 0
            assert sum(sizes) - 8 - (len(origins) - 1) * plan.overlap < length
            assert max(overlaps) - min(overlaps) <= (8 if length % 8 == 0 else 1)  # even


def test_the_needed_overlap_is_spread_over_every_tile_not_the_last_one():
    plan = plan_tiles(65, 121, 64, overlap=8)
    assert plan.xs == (0, 25) and plan.tiles[0].w == 40  # 2 x 40 - 15 = 65
    assert plan.ys == (0, 36, 73) and plan.tiles[0].h == 48
    assert plan.rows == 3 and plan.cols == 2 and len(plan.tiles) == 6


@pytest.mark.parametrize(
    ("width", "height", "redundancy"),
    [(2048, 512, 1.266), (8192, 2048, 1.283), (1824, 1824, 1.261), (257, 257, 1.327)],
)
def test_tiles_compute_little_more_than_the_canvas(width, height, redundancy):
    plan = plan_tiles(width, height, 256)
    assert plan.redundancy == pytest.approx(redundancy, abs=1e-3)  # <= 1.35 (issue 20)


def test_no_canvas_of_two_or_more_tiles_per_axis_computes_over_135_percent():
    worst = max(plan_tiles(side, side, 256).redundancy for side in range(257, 2600))
    assert worst == pytest.approx(1.327, abs=1e-3)  # at 257 x 257 (issue 20: <= 1.35)


def test_a_side_smaller_than_a_tile_gets_one_tile_rendered_rounded_up():
    plan = plan_tiles(17, 9000, 512, align=8)
    assert plan.xs == (0,) and plan.cols == 1
    assert all((t.w, t.render_w) == (17, 24) for t in plan.tiles)
    assert all(t.h == t.render_h for t in plan.tiles)
    assert set(plan.heights) == {512, 504} and sum(plan.heights) == 9000 + 19 * 64

    tiny = plan_tiles(1, 1, 64)
    assert len(tiny.tiles) == 1
    assert (tiny.tiles[0].w, tiny.tiles[0].render_w) == (1, 8)
    assert tiny.redundancy == 1.0


def test_tiles_are_row_major_with_keys():
    plan = plan_tiles(3001, 1237, 512)
    assert (plan.rows, plan.cols) == (3, 7)
    for t in plan.tiles:
        assert t.index == t.row * plan.cols + t.col
        assert (t.x, t.y) == (plan.xs[t.col], plan.ys[t.row])
        assert t.key == f"r{t.row}c{t.col}"
    row = plan.tiles_in_row(1)
    assert [t.col for t in row] == list(range(plan.cols)) and {t.row for t in row} == {1}
    with pytest.raises(IndexError):
        plan.tiles_in_row(3)


@pytest.mark.parametrize(
    ("tile", "align", "overlap"), [(512, 8, 64), (256, 8, 32), (64, 8, 8), (8, 8, 0), (96, 16, 16)]
)
def test_default_overlap_is_an_eighth_of_the_tile_rounded_to_the_alignment(tile, align, overlap):
    assert plan_tiles(4000, 4000, tile, align=align).overlap == overlap


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 0}, "width"),
        ({"height": -3}, "height"),
        ({"tile_size": 500}, "tile_size"),
        ({"tile_size": (512, 4)}, "tile_size"),
        ({"overlap": 512}, "overlap"),
        ({"overlap": -1}, "overlap"),
        ({"align": 0}, "align"),
    ],
)
def test_invalid_parameters_name_the_field(kwargs, field):
    args = {"width": 1024, "height": 1024, "tile_size": 512} | kwargs
    with pytest.raises(RequestError) as caught:
        plan_tiles(**args)
    assert caught.value.field == field


def test_tile_seeds_are_deterministic_distinct_and_in_range():
    plan = plan_tiles(2048, 2048, 128)
    seeds = [tile_seed(1234, t) for t in plan.tiles]
    assert seeds == [tile_seed(1234, t) for t in plan_tiles(2048, 2048, 128).tiles]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    assert seeds != [tile_seed(1235, t) for t in plan.tiles]
