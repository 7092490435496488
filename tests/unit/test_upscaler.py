"""The ncnn upscaler engine with the real animevideov3 x4 weights, and tiled upscaling.

The test image is a synthetic scene (gradients, shapes with outlines, thin
lines, grain) so that tile borders fall on real structure.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from core.errors import ModelLoadError
from core.largeformat.assembler import RowAssembler
from core.largeformat.seams import seam_score
from core.largeformat.upscaling import Box, plan_upscale
from serve.upscaler import UpscalerEngine, load_upscaler, model_files

SOURCE = "realesrgan:animevideov3-x4"


def scene(width: int, height: int, seed: int = 3) -> np.ndarray:
    """A uint8 (height, width, 3) picture with edges and texture everywhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([128 + 100 * np.sin(xx / 17 + c) * np.cos(yy / 23) for c in range(3)], -1)
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x0, y0 = (int(v) for v in rng.integers(0, (width, height)))
        x1, y1 = x0 + int(rng.integers(5, 60)), y0 + int(rng.integers(5, 60))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.integers(2) else draw.rectangle
        shape((x0, y0, x1, y1), fill=fill, outline=(0, 0, 0))
    for x in range(0, width, 9):
        draw.line((x, 0, x + height // 3, height), fill=(255, 255, 255))
    image = image.filter(ImageFilter.GaussianBlur(0.7))
    grain = rng.integers(-6, 7, (height, width, 3))
    return np.clip(np.asarray(image).astype(np.int16) + grain, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def engine() -> UpscalerEngine:
    return load_upscaler(SOURCE, 4, threads=1)


def test_upscales_a_real_image_to_exactly_scale_times_its_size(engine):
    image = scene(37, 29)
    result = engine.upscale(image)
    assert result.shape == (116, 148, 3) and result.dtype == np.uint8
    # Shrunk back it is the input again (not noise, not a blank or shifted image).
    shrunk = np.asarray(Image.fromarray(result).resize((37, 29), Image.Resampling.BOX))
    assert psnr(shrunk, image) > 22  # measured 24 dB (it removes the grain); shifted by 1: 14
    assert engine.device == "cpu" and engine.scale == 4


def test_same_input_gives_identical_bytes(engine):
    image = scene(40, 24, seed=5)
    assert np.array_equal(engine.upscale(image), engine.upscale(image.copy()))


def test_crop_keeps_exactly_that_part_of_the_result(engine):
    image = scene(30, 20)
    whole = engine.upscale(image)
    crop = Box(8, 4, 100, 64)
    assert np.array_equal(engine.upscale(image, crop), crop.cut(whole))
    with pytest.raises(ValueError, match="outside the 120x80 result"):
        engine.upscale(image, Box(0, 0, 121, 80))
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        engine.upscale(image.astype(np.float32))


def stitch(engine: UpscalerEngine, image: np.ndarray, padding: int, overlap: int | None):
    """Upscale `image` tile by tile and blend the tiles; return it and the canvas plan."""
    plan = plan_upscale(image.shape[1], image.shape[0], 4, 48, padding, overlap)
    assembler = RowAssembler(plan.canvas)
    bands = []
    for padded, target in zip(plan.tiles, plan.canvas.tiles, strict=True):
        request = padded.request(image)
        bands += assembler.add(target, engine.upscale(request.image, request.crop))
    assert assembler.done and len(plan.tiles) == 6
    return np.concatenate([band for _, band in bands]), plan.canvas


def test_padded_tiles_match_the_whole_image_and_unpadded_tiles_do_not(engine):
    image = scene(100, 76)
    whole = engine.upscale(image)
    padded, canvas = stitch(engine, image, padding=10, overlap=None)
    unpadded, _ = stitch(engine, image, padding=0, overlap=None)
    naive, naive_canvas = stitch(engine, image, padding=0, overlap=0)
    assert padded.shape == whole.shape == (304, 400, 3)
    padded_db, unpadded_db, naive_db = (psnr(x, whole) for x in (padded, unpadded, naive))
    assert padded_db > 60  # measured 77 dB
    assert unpadded_db < padded_db - 15  # measured 52 dB: feathering hides only part of it
    assert naive_db < unpadded_db  # measured 40 dB
    assert seam_score(padded, canvas) <= 1.05
    assert seam_score(naive, naive_canvas) > 1.05


def test_missing_model_files_name_the_path(tmp_path):
    param, weights = tmp_path / "model.param", tmp_path / "model.bin"
    with pytest.raises(ModelLoadError, match=re.escape(f"not found: {param}, {weights}")):
        load_upscaler(str(param), 4)
    shutil.copy(model_files(SOURCE)[0], param)
    with pytest.raises(ModelLoadError, match=re.escape(f"not found: {weights}") + "$"):
        load_upscaler(str(param), 4)
    with pytest.raises(ModelLoadError, match="unknown Real-ESRGAN variant 'x5'"):
        model_files("realesrgan:x5")


def test_broken_or_misconfigured_files_fail_at_load(tmp_path):
    param = tmp_path / "model.param"
    param.write_text("not an ncnn model\n")
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not a valid ncnn .param"):
        load_upscaler(str(param), 4)
    with pytest.raises(ModelLoadError, match=r"not 16x16 \(scale 2\)"):
        load_upscaler(SOURCE, 2)
