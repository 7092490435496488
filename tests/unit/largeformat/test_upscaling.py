"""Tiled-upscale geometry (padded source boxes, crops, the scaled canvas) and upscaler config."""

from __future__ import annotations

import numpy as np
import pytest

from core.config_file import parse_config
from core.errors import ConfigError, RequestError
from core.largeformat.assembler import RowAssembler
from core.largeformat.upscaling import Box, plan_upscale, scale_plan
from core.model_source import parse_source

AWKWARD = [
    # width, height, scale, tile size, padding
    (101, 67, 4, 32, 10),
    (33, 200, 3, 32, 10),  # a side barely over one tile
    (20, 17, 2, 64, 10),  # smaller than one tile
    (1, 1, 4, 16, 10),
    (130, 45, 4, 40, 0),
    (97, 97, 2, 24, 30),  # padding wider than a tile: reaches across neighbours
]


def nearest(image: np.ndarray, scale: int) -> np.ndarray:
    """A stand-in upscaler that every tile agrees with: nearest neighbour."""
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


@pytest.mark.parametrize(("width", "height", "scale", "tile", "padding"), AWKWARD)
def test_padded_boxes_and_crops(width, height, scale, tile, padding):
    plan = plan_upscale(width, height, scale, tile, padding)
    covered = np.zeros((height, width), bool)
    for padded in plan.tiles:
        t, box, crop = padded.tile, padded.box, padded.crop
        covered[t.y : t.y + t.h, t.x : t.x + t.w] = True
        assert 0 <= box.x0 <= t.x and t.x + t.w <= box.x1 <= width
        assert 0 <= box.y0 <= t.y and t.y + t.h <= box.y1 <= height
        # context is `padding` wherever the image allows it, clamped at the image edge
        assert t.x - box.x0 == min(padding, t.x)
        assert box.x1 - t.x - t.w == min(padding, width - t.x - t.w)
        assert t.y - box.y0 == min(padding, t.y)
        assert box.y1 - t.y - t.h == min(padding, height - t.y - t.h)
        assert (crop.width, crop.height) == (t.w * scale, t.h * scale)
        assert crop.x0 == (t.x - box.x0) * scale and crop.y0 == (t.y - box.y0) * scale
        assert crop.x1 <= box.width * scale and crop.y1 <= box.height * scale
    assert covered.all()


@pytest.mark.parametrize(("width", "height", "scale", "tile", "padding"), AWKWARD)
def test_cropped_tiles_blended_on_the_scaled_canvas_rebuild_the_upscaled_image(
    width, height, scale, tile, padding
):
    image = np.random.default_rng(width).integers(0, 256, (height, width, 3), np.uint8)
    plan = plan_upscale(width, height, scale, tile, padding)
    assembler = RowAssembler(plan.canvas)
    bands = []
    for index in reversed(range(len(plan.tiles))):  # any order
        padded = plan.tiles[index]
        request = padded.request(image)
        assert request.key == padded.tile.key and request.image.flags.c_contiguous
        upscaled = request.crop.cut(nearest(request.image, scale))
        bands += assembler.add(plan.canvas.tiles[index], upscaled)
    canvas = np.concatenate([band for _, band in sorted(bands, key=lambda b: b[0])])
    assert np.array_equal(canvas, nearest(image, scale))


def test_scale_plan_multiplies_every_coordinate():
    plan = plan_upscale(101, 67, 3, 32, 10, overlap=4)
    source, canvas = plan.source, scale_plan(plan.source, 3)
    assert canvas == plan.canvas
    assert (canvas.width, canvas.height, canvas.overlap) == (303, 201, 12)
    assert (canvas.rows, canvas.cols) == (source.rows, source.cols) == (3, 4)
    assert canvas.xs == tuple(3 * x for x in source.xs) == (0, 75, 147, 219)
    assert canvas.widths == tuple(3 * w for w in source.widths) == (87, 84, 84, 84)
    assert canvas.heights == (75, 75, 75)
    last = canvas.tiles[-1]
    assert (last.x + last.w, last.y + last.h) == (303, 201)
    assert all((t.render_w, t.render_h) == (t.w, t.h) for t in canvas.tiles)


def test_box_cut_and_bad_plans():
    image = np.arange(5 * 4).reshape(5, 4)
    assert Box(1, 2, 3, 5).cut(image).tolist() == [[9, 10], [13, 14], [17, 18]]
    with pytest.raises(RequestError, match="scale: must be >= 1, got 0"):
        plan_upscale(10, 10, 0, 8)
    with pytest.raises(RequestError, match="padding: must be >= 0, got -1"):
        plan_upscale(10, 10, 2, 8, padding=-1)


UPSCALER = """
models:
  draw: {source: "tiny:0"}
  up:
    source: "realesrgan:animevideov3-x4"
    family: upscaler
    upscaler: {scale: 4, tile_size: 128}
  custom:
    source: "/models/my-esrgan-x2.param"
    family: upscaler
    upscaler: {scale: 2, tile_size: 96, context_padding: 16}
"""


def test_an_upscaler_model_validates():
    config = parse_config(UPSCALER)
    up = config.models["up"].upscaler
    assert (up.scale, up.tile_size, up.context_padding) == (4, 128, 10)
    assert config.models["custom"].upscaler.context_padding == 16
    assert config.models["draw"].upscaler is None
    assert parse_source("realesrgan:x4plus").kind == "realesrgan"
    assert parse_source("realesrgan:x4plus").location == "x4plus"


def test_a_bad_upscaler_lists_its_problems():
    with pytest.raises(ConfigError) as info:
        parse_config(
            """models:
  a: {source: "realesrgan:x5", family: upscaler}
  b: {source: "realesrgan:animevideov3-x2", family: upscaler, upscaler: {scale: 4}}
  c: {source: "tiny:0", family: upscaler, upscaler: {scale: 3, context_padding: -1}}
  d: {source: "tiny:0", upscaler: {scale: 2}}
  e: {source: "realesrgan:x4plus"}
""",
            source="bad.yaml",
        )
    problems = info.value.problems
    text = "\n".join(problems)
    assert "models.a (line 2)" in text
    assert "needs an 'upscaler' section" in text and "unknown Real-ESRGAN variant 'x5'" in text
    assert "models.b (line 3)" in text
    assert "upscaler.scale (4) does not match realesrgan:animevideov3-x2 (x2)" in text
    assert "models.c.upscaler.context_padding (line 4)" in text
    assert "models.d (line 5): 'upscaler' options need family 'upscaler', not 'sd'" in text
    assert "models.e (line 6)" in text and "is an upscaler: set family 'upscaler'" in text
    assert len(problems) == 5
