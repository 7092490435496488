import asyncio

import numpy as np
import pytest

from core.errors import RequestError
from core.schemas import GenerateRequest
from core.typography import (
    GateThresholds,
    TextBox,
    integrated_strength,
    integration_box,
    tesseract_available,
)
from core.typography.delivery import aligned, deliver_text, inpaint_pass
from core.typography.schema import TextSpec
from core.typography.typeset import typeset_spec
from tests.unit.typography.scenes import busy, flat

needs_tesseract = pytest.mark.skipif(
    not tesseract_available(), reason="tesseract missing (Debian: tesseract-ocr)"
)
SIZE = (640, 384)


def _box(copy: str = "Spring SALE $19.99", **fields) -> TextBox:
    anchor = fields.pop("anchor", {"x": 0.05, "y": 0.6, "w": 0.9, "h": 0.3})
    return TextBox(copy=copy, anchor=anchor, min_cap_height_px=24, **fields)


def _glyph_pixels_are_ink(canvas: np.ndarray, report, spec: TextSpec) -> bool:
    (text,) = typeset_spec(spec, (canvas.shape[1], canvas.shape[0]))
    full = text.alpha == 255
    ink = np.array([int(report.boxes[0].treatment.ink[i : i + 2], 16) for i in (1, 3, 5)])
    return bool(full.any() and (canvas[text.region.slices()][full] == ink).all())


@needs_tesseract
def test_overlay_box_is_composited_exactly_and_passes_the_gate():
    scene = busy(SIZE, seed=3)
    canvas = scene.copy()
    spec = TextSpec((_box(),))
    report = asyncio.run(deliver_text(canvas, spec))
    assert report.passed, report.failures()
    (box_report,) = report.boxes
    assert box_report.delivered == "overlay" and box_report.gate.ocr_text == "Spring SALE $19.99"
    assert box_report.typeset["box"] == "text_boxes[0]"
    assert _glyph_pixels_are_ink(canvas, report, spec)
    region = typeset_spec(spec, SIZE)[0].region
    outside = np.ones(canvas.shape[:2], bool)
    outside[region.slices()] = False
    assert np.array_equal(canvas[outside], scene[outside])  # nothing else touched
    assert report.stray_text is not None and report.stray_text.passed


@needs_tesseract
def test_integrated_box_is_kept_when_its_pass_passes_the_gate():
    canvas = flat(SIZE, (30, 60, 120))
    spec = TextSpec((_box(mode="integrated", softness=1.0),), stray_text=False)
    calls = []

    async def img2img(image, mask, strength):
        calls.append((mask, strength))
        out = image.copy()
        out[mask == 255] = np.clip(out[mask == 255].astype(int) + 3, 0, 255)  # a gentle pass
        return out

    report = asyncio.run(deliver_text(canvas, spec, img2img))
    ((mask, strength),) = calls
    area = integration_box(typeset_spec(spec, SIZE)[0])
    assert strength == integrated_strength(1.0)
    assert mask.size < canvas.shape[0] * canvas.shape[1]  # the box's neighbourhood only
    assert mask.sum() == 255 * area.area and 0 < mask.mean() < 255
    (box_report,) = report.boxes
    assert report.passed and box_report.delivered == "integrated"
    assert box_report.integrated_gate is not None and box_report.integrated_gate.passed


@needs_tesseract
def test_integrated_box_falls_back_to_overlay_when_the_pass_loses_the_copy():
    canvas = flat(SIZE, (30, 60, 120))
    spec = TextSpec((_box(mode="integrated"),), stray_text=False)

    async def wipe(image, mask, strength):
        out = image.copy()
        out[mask == 255] = (30, 60, 120)  # the model painted the text away
        return out

    report = asyncio.run(deliver_text(canvas, spec, wipe))
    (box_report,) = report.boxes
    assert not box_report.integrated_gate.passed
    assert box_report.delivered == "overlay" and "failed the gate" in box_report.note
    assert report.passed and _glyph_pixels_are_ink(canvas, report, spec)


@needs_tesseract
def test_delivery_edits_a_memory_map_in_place(tmp_path):
    path = tmp_path / "canvas.raw"
    mapped = np.memmap(path, np.uint8, "w+", shape=(SIZE[1], SIZE[0], 3))
    mapped[:] = busy(SIZE, seed=5)
    spec = TextSpec((_box(mode="integrated"),))
    report = asyncio.run(deliver_text(mapped, spec))
    mapped.flush()
    reread = np.fromfile(path, np.uint8).reshape(SIZE[1], SIZE[0], 3)
    assert report.passed and _glyph_pixels_are_ink(reread, report, spec)
    assert report.boxes[0].delivered == "overlay"
    assert "no img2img pass" in report.boxes[0].note


@needs_tesseract
@pytest.mark.parametrize("size", [SIZE, (2560, 768)], ids=["as is", "scaled down by 3"])
def test_stray_words_outside_the_boxes_fail_the_render(size):
    canvas = flat(size, (240, 240, 240))
    stray = TextSpec((_box("OPEN DAILY", anchor={"x": 0.05, "y": 0.05, "w": 0.9}),))
    asyncio.run(
        deliver_text(canvas, TextSpec(stray.boxes, stray_text=False))
    )  # painted "by the model"
    report = asyncio.run(deliver_text(canvas, TextSpec((_box(),))))
    assert report.boxes[0].gate.passed and not report.passed
    assert report.stray_text is not None and "OPEN" in report.stray_text.detail
    assert report.message().startswith("typography gate failed: stray_text (")


def test_failures_name_the_box_and_the_check():
    canvas = flat(SIZE, (128, 128, 128))
    locked = _box(ink="#777777", ink_locked=True)  # a mid tone: even a plate stays below 5:1
    spec = TextSpec((locked,), thresholds=GateThresholds(min_contrast=5.0), stray_text=False)
    report = asyncio.run(deliver_text(canvas, spec))
    assert not report.passed and report.boxes[0].treatment.kind == "plate"
    assert any(f.startswith("text_boxes[0] contrast (") for f in report.failures())
    assert report.message().startswith("typography gate failed: text_boxes[0] ")


def test_a_box_that_cannot_fit_is_named_by_its_index():
    spec = TextSpec((_box(), _box("far too much copy for one line " * 3, max_lines=1)))
    with pytest.raises(RequestError) as caught:
        typeset_spec(spec, SIZE)
    assert caught.value.field == "text_boxes[1].copy"
    assert "max_lines=1" in caught.value.message


@needs_tesseract
def test_a_region_over_one_model_call_is_delivered_as_overlay():
    canvas = flat(SIZE, (30, 60, 120))
    spec = TextSpec((_box(mode="integrated"),), stray_text=False)
    calls = []

    async def render(request):
        calls.append(request)
        return request.init_image

    request = GenerateRequest(prompt="p", width=64, height=64, steps=2, guidance=3.0, seed=1)
    report = asyncio.run(deliver_text(canvas, spec, inpaint_pass(render, request, 8, 10_000)))
    (box_report,) = report.boxes
    assert not calls and box_report.delivered == "overlay" and report.passed
    assert "over one model call (10000 pixels)" in box_report.note


def test_inpaint_pass_sends_the_region_on_the_latent_grid_and_crops_the_answer():
    seen = []

    async def render(request):
        seen.append(request)
        assert request.width % 8 == 0 and request.height % 8 == 0
        return 255 - request.init_image

    base = GenerateRequest(prompt="p", width=64, height=64, steps=2, guidance=3.0, seed=5)
    region = busy((61, 37), seed=1)
    mask = np.full((37, 61), 255, np.uint8)
    out = asyncio.run(inpaint_pass(render, base, 8, 10_000)(region, mask, 0.3))
    (request,) = seen
    assert (request.mode, request.width, request.height, request.strength) == (
        "inpaint",
        64,
        40,
        0.3,
    )
    assert request.seed == 5 and request.mask[:37, :61].all() and not request.mask[37:].any()
    assert np.array_equal(out, 255 - region)


def test_aligned_leaves_grid_sizes_alone():
    async def identity(region, mask, strength):
        return region

    region = busy((64, 32), seed=2)
    out = asyncio.run(aligned(identity, 8)(region, np.zeros((32, 64), np.uint8), 0.5))
    assert np.array_equal(out, region)
