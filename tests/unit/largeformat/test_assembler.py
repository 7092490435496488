import numpy as np
import pytest
from PIL import Image

from core.largeformat.assembler import RowAssembler
from core.largeformat.blending import tile_weights
from core.largeformat.tiling import plan_tiles

AWKWARD = [
    # width, height, tile size, overlap
    (3001, 1237, 512, None),
    (17, 900, 128, None),
    (1, 1, 64, None),
    (121, 65, 64, 8),  # 1-pixel remainders on both axes
    (113, 113, 64, 16),  # three tiles of 56 spread evenly
    (130, 130, 64, 40),  # heavy overlap: three tiles cover some pixels
    (1000, 300, (128, 64), 16),
    (250, 250, 64, 0),
]


def _random(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def _assemble(assembler, plan, tiles, order=None):
    """Feed tiles in `order`; check the bands and return the canvas."""
    bands = []
    for index in order if order is not None else range(len(plan.tiles)):
        bands += assembler.add(plan.tiles[index], tiles[index])
    expected_y = 0
    for y0, band in bands:
        assert y0 == expected_y and band.dtype == np.uint8
        assert band.shape[1:] == (plan.width, tiles[0].shape[2])
        expected_y += len(band)
    assert expected_y == plan.height and assembler.done
    assert assembler.rows_emitted == plan.height
    return np.concatenate([band for _, band in bands])


def _crops(source, plan):
    return {t.index: source[t.y : t.y + t.h, t.x : t.x + t.w].copy() for t in plan.tiles}


@pytest.mark.parametrize("channels", [3, 1, 4])
@pytest.mark.parametrize(("width", "height", "tile", "overlap"), AWKWARD)
def test_identical_tiles_reproduce_the_source_exactly(width, height, tile, overlap, channels):
    plan = plan_tiles(width, height, tile, overlap)
    source = _random((height, width, channels))
    canvas = _assemble(RowAssembler(plan, channels=channels), plan, _crops(source, plan))
    assert canvas.tobytes() == source.tobytes()


@pytest.mark.parametrize(
    ("width", "height", "tile", "overlap", "blend"),
    [(*case, "feather") for case in AWKWARD[:6]] + [(*case, "multiband") for case in AWKWARD[1:6]],
)
def test_any_arrival_order_gives_identical_bytes(width, height, tile, overlap, blend):
    plan = plan_tiles(width, height, tile, overlap)
    tiles = {t.index: _random((t.h, t.w, 3), seed=t.index) for t in plan.tiles}
    reference = _assemble(RowAssembler(plan, blend=blend), plan, tiles)
    rng = np.random.default_rng(7)
    orders = [list(reversed(range(len(plan.tiles))))] + [
        list(rng.permutation(len(plan.tiles))) for _ in range(2)
    ]
    for order in orders:
        canvas = _assemble(RowAssembler(plan, blend=blend), plan, tiles, order)
        assert canvas.tobytes() == reference.tobytes()


@pytest.mark.parametrize(("width", "height", "tile", "overlap"), AWKWARD)
def test_feathered_output_follows_the_blend_weights(width, height, tile, overlap):
    plan = plan_tiles(width, height, tile, overlap)
    tiles = {t.index: _random((t.h, t.w, 3), seed=t.index) for t in plan.tiles}
    expected = np.zeros((height, width, 3))
    coverage = np.zeros((height, width), np.int32)
    for t in plan.tiles:
        weights = tile_weights(plan, t).astype(np.float64)[:, :, None]
        expected[t.y : t.y + t.h, t.x : t.x + t.w] += weights * tiles[t.index]
        coverage[t.y : t.y + t.h, t.x : t.x + t.w] += 1
    canvas = _assemble(RowAssembler(plan), plan, tiles).astype(np.float64)
    # fixed-point pair mixes, rounded after each axis: within 2 levels of the float blend
    assert np.abs(canvas - expected).max() <= 2.0
    # where a single tile covers the canvas its pixels are copied unchanged
    assert np.array_equal(canvas[coverage == 1], np.rint(expected[coverage == 1]))


def test_rows_are_emitted_as_soon_as_every_overlapping_tile_is_in():
    plan = plan_tiles(300, 300, 128, overlap=16)  # ys = 0, 112, 172
    tiles = {t.index: _random((t.h, t.w, 3)) for t in plan.tiles}
    assembler = RowAssembler(plan)
    first_row = plan.tiles_in_row(0)
    for t in first_row[:-1]:
        assert assembler.add(t, tiles[t.index]) == []
    ((y0, band),) = assembler.add(first_row[-1], tiles[first_row[-1].index])
    assert (y0, len(band)) == (0, plan.ys[1])  # up to where the second tile row begins
    assert assembler.rows_emitted == plan.ys[1] and not assembler.done


def _peak_for_height(height):
    plan = plan_tiles(1024, height, 128, overlap=16)
    assembler = RowAssembler(plan)
    tile = np.zeros((128, 128, 3), np.uint8)
    for t in plan.tiles:
        assembler.add(t, tile)
    return assembler.peak_held_bytes, plan


def test_memory_held_depends_on_the_width_not_the_height():
    # heights of 16 + 112 k px: every tile row sits on the regular stride
    short_peak, plan = _peak_for_height(16 + 112 * 4)
    tall_peak, _ = _peak_for_height(16 + 112 * 72)
    assert short_peak == tall_peak
    # one tile row plus the overlap strip kept from the row above
    assert tall_peak == plan.cols * 128 * (128 + 16) * 3


def test_multiband_reproduces_identical_tiles_closely():
    plan = plan_tiles(400, 300, 128, overlap=32)
    small = _random((20, 26, 3))
    source = np.asarray(Image.fromarray(small).resize((400, 300), Image.Resampling.BICUBIC))
    canvas = _assemble(RowAssembler(plan, blend="multiband"), plan, _crops(source, plan))
    assert np.abs(canvas.astype(int) - source).max() <= 2


def test_invalid_tiles_are_rejected_naming_the_tile():
    plan = plan_tiles(256, 256, 128, overlap=16)
    assembler = RowAssembler(plan)
    tile = plan.tiles[1]
    with pytest.raises(ValueError, match="r0c1"):
        assembler.add(tile, np.zeros((tile.h, tile.w + 1, 3), np.uint8))
    with pytest.raises(ValueError, match="r0c1"):
        assembler.add(tile, np.zeros((tile.h, tile.w, 3), np.float32))
    assembler.add(tile, np.zeros((tile.h, tile.w, 3), np.uint8))
    with pytest.raises(ValueError, match="r0c1.*already"):
        assembler.add(tile, np.zeros((tile.h, tile.w, 3), np.uint8))
    stranger = plan_tiles(512, 256, 128, overlap=16).tiles[2]
    with pytest.raises(ValueError, match="not part of this plan"):
        assembler.add(stranger, np.zeros((stranger.h, stranger.w, 3), np.uint8))


def test_invalid_options_are_rejected():
    plan = plan_tiles(256, 256, 128)
    with pytest.raises(ValueError, match="blend"):
        RowAssembler(plan, blend="poisson")
    with pytest.raises(ValueError, match="channels"):
        RowAssembler(plan, channels=0)
    with pytest.raises(ValueError, match="levels"):
        RowAssembler(plan, blend="multiband", levels=0)
    with pytest.raises(ValueError, match="ramp"):
        RowAssembler(plan, ramp="gaussian")


@pytest.mark.parametrize("blend", ["feather", "multiband"])
@pytest.mark.parametrize(("width", "height", "tile", "overlap"), AWKWARD[:6])
def test_small_bands_give_identical_bytes(width, height, tile, overlap, blend):
    plan = plan_tiles(width, height, tile, overlap)
    tiles = {t.index: _random((t.h, t.w, 3), seed=t.index) for t in plan.tiles}
    reference = _assemble(RowAssembler(plan, blend=blend), plan, tiles)
    for rows in (1, 5):
        assembler = RowAssembler(plan, blend=blend, band_bytes=rows * width * 3)
        order = list(np.random.default_rng(rows).permutation(len(plan.tiles)))
        canvas = _assemble(assembler, plan, tiles, order)
        assert canvas.tobytes() == reference.tobytes()


def test_bands_are_bounded_and_blended_one_at_a_time():
    plan = plan_tiles(1000, 300, 128, overlap=16)
    tiles = {t.index: _random((t.h, t.w, 3), seed=t.index) for t in plan.tiles}
    assembler = RowAssembler(plan, band_bytes=10 * 1000 * 3)
    for t in plan.tiles[:-1]:
        assembler.put(t, tiles[t.index])
    assembler.put(plan.tiles[-1], tiles[plan.tiles[-1].index])
    bands = assembler.bands()
    y0, band = next(bands)
    assert (y0, len(band)) == (0, 10) and assembler.rows_emitted == 10  # nothing blended ahead
    rest = list(bands)
    assert all(len(band) <= 10 for _, band in rest) and assembler.done
    assert rest[-1][0] + len(rest[-1][1]) == plan.height
