import numpy as np
import pytest
from PIL import Image

from core.largeformat.assembler import RowAssembler
from core.largeformat.seams import SeamMeter, seam_score
from core.largeformat.tiling import plan_tiles


def _natural(height, width, seed=0):
    """Smooth random image with detail at several scales, like a photograph."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3))
    for scale, amplitude in ((64, 60.0), (16, 25.0), (4, 8.0)):
        small = rng.random((height // scale + 1, width // scale + 1, 3))
        layer = Image.fromarray((small * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        image += (np.asarray(layer) / 255 - 0.5) * amplitude
    return np.clip(128 + image, 0, 255).astype(np.uint8)


def _assemble(plan, tiles):
    assembler = RowAssembler(plan)
    bands = [band for t in plan.tiles for _, band in assembler.add(t, tiles[t.index])]
    return np.concatenate(bands)


PLAN = plan_tiles(1024, 768, 128, overlap=16)


def _crops(image, plan, offsets=None):
    tiles = {}
    for t in plan.tiles:
        crop = image[t.y : t.y + t.h, t.x : t.x + t.w].astype(np.int16)
        if offsets is not None:
            crop = crop + offsets[t.index]
        tiles[t.index] = np.clip(crop, 0, 255).astype(np.uint8)
    return tiles


def test_seamless_image_scores_about_one():
    image = _natural(PLAN.height, PLAN.width)
    assert 0.85 < seam_score(image, PLAN) < 1.15
    assert 0.85 < seam_score(_assemble(PLAN, _crops(image, PLAN)), PLAN) < 1.15


def test_tiles_offset_in_colour_score_clearly_above_one():
    image = _natural(PLAN.height, PLAN.width)
    offsets = np.random.default_rng(1).integers(-20, 21, (len(PLAN.tiles), 3))
    blended = _assemble(PLAN, _crops(image, PLAN, offsets))
    assert seam_score(blended, PLAN) > 1.5

    # a hard cut at the middle of each overlap (each pixel from its nearest tile)
    hard = image.astype(np.int16).copy()
    for t in PLAN.tiles:
        x0 = 0 if t.col == 0 else t.x + PLAN.overlap // 2
        y0 = 0 if t.row == 0 else t.y + PLAN.overlap // 2
        hard[y0 : t.y + t.h, x0 : t.x + t.w] = (
            image[y0 : t.y + t.h, x0 : t.x + t.w] + offsets[t.index]
        )
    assert seam_score(np.clip(hard, 0, 255).astype(np.uint8), PLAN) > 3.0


def test_a_single_tile_has_no_seams():
    plan = plan_tiles(300, 200, 512)
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), np.uint8)
    assert seam_score(image, plan) == 1.0


def test_a_flat_image_scores_one():
    assert seam_score(np.full((PLAN.height, PLAN.width, 3), 77, np.uint8), PLAN) == 1.0


def test_meter_fed_in_bands_matches_the_whole_image_score():
    image = _natural(PLAN.height, PLAN.width)
    image[:, 500:] //= 2  # a vertical step, so that the score is not 1
    meter = SeamMeter(PLAN)
    for y0 in range(0, PLAN.height, 100):
        meter.add_rows(y0, image[y0 : y0 + 100])
    assert meter.score == pytest.approx(seam_score(image, PLAN), rel=1e-9)


def test_wrong_image_shape_or_band_order_is_rejected():
    with pytest.raises(ValueError):
        seam_score(np.zeros((PLAN.height, PLAN.width + 1, 3), np.uint8), PLAN)
    meter = SeamMeter(PLAN)
    with pytest.raises(ValueError):
        meter.add_rows(10, np.zeros((5, PLAN.width, 3), np.uint8))
