import numpy as np
import pytest
from PIL import Image

from core.largeformat.blending import axis_weights, multiband_contribution, tile_weights
from core.largeformat.tiling import plan_tiles

PLANS = [
    (3001, 1237, 512, None),
    (17, 900, 128, None),
    (1, 1, 64, None),
    (121, 65, 64, 8),  # 1-pixel remainders
    (113, 113, 64, 16),  # three tiles of 56 spread evenly
    (130, 130, 64, 40),  # heavy overlap: three tiles cover some pixels
    (1000, 300, (128, 64), 16),
    (250, 250, 64, 0),
]


def _weight_sum(plan, ramp):
    total = np.zeros((plan.height, plan.width), np.float64)
    for t in plan.tiles:
        weights = tile_weights(plan, t, ramp)
        assert weights.dtype == np.float32 and weights.shape == (t.h, t.w)
        assert weights.min() >= 0
        total[t.y : t.y + t.h, t.x : t.x + t.w] += weights
    return total


@pytest.mark.parametrize("ramp", ["cosine", "linear"])
@pytest.mark.parametrize(("width", "height", "tile", "overlap"), PLANS)
def test_weights_sum_to_one_everywhere(width, height, tile, overlap, ramp):
    total = _weight_sum(plan_tiles(width, height, tile, overlap), ramp)
    assert np.abs(total - 1).max() < 1e-6


def test_weight_is_exactly_one_where_a_single_tile_covers_including_canvas_edges():
    plan = plan_tiles(600, 400, 128, overlap=16)
    coverage = np.zeros((plan.height, plan.width), np.int32)
    for t in plan.tiles:
        coverage[t.y : t.y + t.h, t.x : t.x + t.w] += 1
    for t in plan.tiles:
        alone = coverage[t.y : t.y + t.h, t.x : t.x + t.w] == 1
        assert alone.any()
        assert np.all(tile_weights(plan, t)[alone] == 1.0)
    corner = tile_weights(plan, plan.tiles[0])
    assert np.all(corner[0, : plan.xs[1]] == 1.0) and np.all(corner[: plan.ys[1], 0] == 1.0)


def test_cosine_ramp_is_monotonic_and_mirrored_across_a_regular_overlap():
    left, right = axis_weights((0, 48, 96, 144, 192), 64, 256)[:2]
    fall, rise = left[48:], right[:16]
    assert np.all(np.diff(fall) < 0) and np.all(np.diff(rise) > 0)
    np.testing.assert_allclose(rise, fall[::-1], atol=1e-7)
    np.testing.assert_allclose(
        rise, 0.5 - 0.5 * np.cos(np.pi * (np.arange(16) + 0.5) / 16), atol=1e-7
    )


def test_linear_ramp_values():
    plan = plan_tiles(124, 64, 64, overlap=4)  # xs = (0, 60)
    right = axis_weights(plan.xs, 64, plan.width, "linear")[1]
    np.testing.assert_allclose(right[:4], [0.125, 0.375, 0.625, 0.875], atol=1e-7)
    assert np.all(right[4:] == 1.0)


def test_an_uneven_last_overlap_ramps_over_its_actual_width():
    last = axis_weights((0, 56, 86), 64, 150)[2]  # the last tile overlaps its neighbour by 34 px
    assert np.all(np.diff(last[:34]) > 0) and last[33] < 1.0
    assert np.all(last[34:] == 1.0)


def test_unknown_ramp_is_rejected():
    plan = plan_tiles(128, 128, 64)
    with pytest.raises(ValueError, match="ramp"):
        tile_weights(plan, plan.tiles[0], "gaussian")


def _smooth(height, width, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 216, (max(2, height // 16), max(2, width // 16), 3), np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def test_multiband_contributions_of_identical_crops_sum_to_the_source():
    plan = plan_tiles(400, 300, 128, overlap=32)
    source = _smooth(300, 400)
    total = np.zeros(source.shape, np.float64)
    for t in plan.tiles:
        crop = source[t.y : t.y + t.h, t.x : t.x + t.w]
        total[t.y : t.y + t.h, t.x : t.x + t.w] += multiband_contribution(plan, t, crop)
    assert np.abs(total - source).max() < 1.5


def test_multiband_of_a_single_tile_is_the_tile():
    plan = plan_tiles(100, 80, 128)
    pixels = np.random.default_rng(0).integers(0, 256, (80, 100, 3), np.uint8)
    contribution = multiband_contribution(plan, plan.tiles[0], pixels, levels=4)
    np.testing.assert_allclose(contribution, pixels, atol=1e-3)
