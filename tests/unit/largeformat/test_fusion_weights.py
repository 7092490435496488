"""Fusion weights: they sum to 1 everywhere, a lone tile counts fully, order does not matter."""

from __future__ import annotations

import numpy as np
import pytest

from core.largeformat.fusion_weights import (
    Fuser,
    FusionWeights,
    latent_plan,
    raw_weights,
)
from core.largeformat.tiling import plan_tiles


def _coverage(plan) -> np.ndarray:
    count = np.zeros((plan.height, plan.width), int)
    for t in plan.tiles:
        count[t.y : t.y + t.h, t.x : t.x + t.w] += 1
    return count


@pytest.mark.parametrize("fuse", ["gaussian", "uniform"])
@pytest.mark.parametrize(
    "size, tile, overlap",
    [((150, 77), 32, 4), ((64, 64), 32, 24), ((20, 9), 32, None), ((256, 64), 64, 56)],
)
def test_weights_sum_to_one_at_every_latent_pixel(fuse, size, tile, overlap):
    plan = plan_tiles(*size, tile, overlap, 1)
    weights = FusionWeights(plan, fuse)
    total = np.zeros((plan.height, plan.width))
    for t in plan.tiles:
        w = weights.tile(t)
        assert w.shape == (t.h, t.w) and w.dtype == np.float32 and (w > 0).all()
        total[t.y : t.y + t.h, t.x : t.x + t.w] += w
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-6)
    alone = _coverage(plan) == 1
    assert (total[alone] == 1.0).all()  # a pixel of one tile takes its prediction unchanged


def test_uniform_weights_are_one_over_the_coverage():
    plan = plan_tiles(40, 16, 16, 8, 1)
    weights = FusionWeights(plan, "uniform")
    coverage = _coverage(plan)
    for t in plan.tiles:
        expected = 1.0 / coverage[t.y : t.y + t.h, t.x : t.x + t.w]
        np.testing.assert_allclose(weights.tile(t), expected, rtol=1e-7)


def test_gaussian_weights_peak_in_the_centre_and_are_symmetric():
    raw = raw_weights(16, 24, "gaussian")
    assert raw.shape == (16, 24)
    np.testing.assert_allclose(raw, raw[::-1, ::-1])
    centre = raw[7:9, 11:13].min()
    assert centre == raw.max() and raw[0, 0] < 1e-5 * centre
    with pytest.raises(ValueError, match="fuse"):
        raw_weights(4, 4, "median")


def test_latent_plan_covers_any_size_with_tiles_on_the_grid():
    plan = latent_plan(1500, 619, 256, None, 8)
    assert (plan.width, plan.height) == (188, 78)  # ceil(1500 / 8), ceil(619 / 8)
    assert (plan.tile_w, plan.overlap) == (32, 4)
    assert plan.xs == (0, 26, 52, 78, 104, 130, 156) and plan.ys == (0, 23, 46)  # spread evenly
    assert all((t.w, t.h) == (32, 32) for t in plan.tiles)  # the denoiser's native size
    assert latent_plan(2048, 512, 512, 448, 8).xs == tuple(range(0, 193, 8))  # panorama's views


@pytest.mark.parametrize("fuse", ["gaussian", "uniform"])
def test_the_fuser_gives_the_same_bytes_in_any_arrival_order(fuse):
    plan = plan_tiles(70, 45, 24, 6, 1)
    weights = FusionWeights(plan, fuse)
    rng = np.random.default_rng(5)
    predictions = [rng.standard_normal((4, t.h, t.w)).astype(np.float32) for t in plan.tiles]
    results = []
    for seed in range(4):
        fuser = Fuser(weights, 4)
        for index in np.random.default_rng(seed).permutation(len(plan.tiles)):
            fuser.add(plan.tiles[index], predictions[index])
        assert fuser.done
        results.append(fuser.result().copy())
    for other in results[1:]:
        assert np.array_equal(results[0], other)
    expected = np.zeros((4, plan.height, plan.width), np.float32)
    for t, p in zip(plan.tiles, predictions, strict=True):
        expected[:, t.y : t.y + t.h, t.x : t.x + t.w] += weights.tile(t) * p
    assert np.array_equal(results[0], expected)


def test_a_constant_prediction_fuses_to_itself():
    plan = plan_tiles(50, 30, 16, 4, 1)
    fuser = Fuser(FusionWeights(plan, "gaussian"), 2)
    for t in plan.tiles:
        fuser.add(t, np.full((2, t.h, t.w), 0.75, np.float32))
    np.testing.assert_allclose(fuser.result(), 0.75, rtol=1e-6)


def test_the_fuser_refuses_duplicates_wrong_shapes_and_early_results():
    plan = plan_tiles(40, 16, 16, 4, 1)
    fuser = Fuser(FusionWeights(plan, "uniform"), 4)
    first = plan.tiles[0]
    with pytest.raises(ValueError, match="expected"):
        fuser.add(first, np.zeros((3, first.h, first.w), np.float32))
    fuser.add(first, np.zeros((4, first.h, first.w), np.float32))
    with pytest.raises(ValueError, match="already added"):
        fuser.add(first, np.zeros((4, first.h, first.w), np.float32))
    with pytest.raises(ValueError, match="missing"):
        fuser.result()
