import json
import os
import stat

import numpy as np
import pytest

from core.typography import (
    PixelBox,
    composite_into,
    gate_box,
    stray_text_check,
    tesseract_available,
)
from core.typography import ocr as ocr_module
from core.typography.ocr import read_line
from core.typography.readback import character_error_rate, normalise_copy, ocr_strip
from core.typography.typeset import typeset
from tests.unit.typography.scenes import box, busy, flat, render

needs_tesseract = pytest.mark.skipif(
    not tesseract_available(), reason="tesseract missing (Debian: tesseract-ocr)"
)
SIZE = (800, 300)


@needs_tesseract
@pytest.mark.parametrize("cap", [16, 32])
def test_ocr_reads_dejavu_sans(cap):
    copy = "Call +1 (555) 010-0199 by 31/12"
    text = typeset(box(copy, cap=cap), SIZE, "b")
    read = read_line(ocr_strip(lambda area: 1 - text.alpha[area] / 255, text))
    assert read.text == copy and read.attempts == 1


@needs_tesseract
@pytest.mark.parametrize("scene", [flat(SIZE), busy(SIZE, seed=7)], ids=["flat", "busy"])
def test_gate_passes_a_cleanly_typeset_box(scene):
    text_box = box("Summer SALE $19.99")
    text, treatment, out = render(text_box, scene)
    verdict = gate_box(out, text_box, text, treatment, scene=scene[text.region.slices()])
    assert verdict.passed, verdict.checks
    checks = {c.name: c for c in verdict.checks}
    assert list(checks) == [
        "fidelity", "ocr", "contrast", "placement", "inside_box", "cap_height",
    ]  # fmt: skip
    assert checks["fidelity"].value == 1.0 and checks["contrast"].value >= 4.5
    assert verdict.ocr_text == "Summer SALE $19.99" and verdict.character_error_rate == 0
    record = json.loads(verdict.model_dump_json())
    assert record["box"] == "text_boxes[0]" and record["passed"] is True


@needs_tesseract
def test_gate_fails_a_box_obscured_by_noise():
    text_box = box("Summer SALE $19.99")
    text, treatment, out = render(text_box, flat(SIZE))
    rng = np.random.default_rng(0)
    ink = text.ink_box
    half = PixelBox(ink.x0 + ink.width // 3, ink.y0, ink.x1, ink.y1)
    out[half.slices()] = rng.integers(0, 256, (half.height, half.width, 3), dtype=np.uint8)
    verdict = gate_box(out, text_box, text, treatment)
    assert not verdict.passed
    assert {"fidelity", "ocr", "contrast"} <= set(verdict.failed_checks)


def _shown_instead(copy: str, shown: str, cap: int = 32):
    """The box of `copy`, and a render that shows `shown` in its place."""
    text_box = box(copy, cap=cap)
    text, treatment, _ = render(text_box, flat(SIZE))
    out = flat(SIZE)
    composite_into(out, typeset(box(shown, cap=cap), SIZE, "text_boxes[0]"), treatment)
    return text_box, text, treatment, out


@needs_tesseract
@pytest.mark.parametrize("shown", ["Summer SALE $19.98", "Summer SAlE $19.99"])
def test_gate_fails_a_one_character_corruption(shown):
    text_box, text, treatment, out = _shown_instead("Summer SALE $19.99", shown)
    verdict = gate_box(out, text_box, text, treatment)
    assert not verdict.passed and "fidelity" in verdict.failed_checks


@needs_tesseract
@pytest.mark.parametrize("cap", [16, 32])
def test_ink_added_where_there_should_be_none_needs_the_scene(cap):
    # an l shown for the final I covers every pixel of the I: only extra ink tells
    text_box, text, treatment, out = _shown_instead("Nil 1I", "Nil 1l", cap)
    scene = flat(SIZE)[text.region.slices()]
    with_scene = gate_box(out, text_box, text, treatment, scene=scene)
    assert not with_scene.passed and "fidelity" in with_scene.failed_checks
    glyphs_only = gate_box(out, text_box, text, treatment)
    assert "fidelity" not in glyphs_only.failed_checks


@needs_tesseract
def test_integrated_mode_compares_glyph_masks():
    text_box = box("Blend me in", mode="integrated")
    text, treatment, out = render(text_box, flat(SIZE))
    assert gate_box(out, text_box, text, treatment).passed
    shifted = flat(SIZE)
    shifted[:, 12:] = out[:, :-12]  # the model moved the letters
    verdict = gate_box(shifted, text_box, text, treatment)
    assert {"fidelity", "placement"} <= set(verdict.failed_checks)


@needs_tesseract
def test_stray_text_outside_the_boxes_is_found():
    text_box = box("Inside", anchor={"x": 0.05, "y": 0.05, "w": 0.5})
    text, treatment, out = render(text_box, flat(SIZE, (230, 230, 230)))
    grown = text.ink_box.expanded(8)
    assert stray_text_check(out, [grown]).passed
    stray = typeset(box("WATERMARK", anchor={"x": 0.1, "y": 0.6, "w": 0.8}), SIZE, "b")
    composite_into(out, stray, treatment.model_copy(update={"ink": "#000000"}))
    check = stray_text_check(out, [grown])
    assert not check.passed and "WATERMARK" in check.detail


def test_a_crashing_ocr_is_retried_and_never_passes(tmp_path, monkeypatch):
    fake = tmp_path / "tesseract"
    fake.write_text("#!/bin/sh\nkill -FPE $$\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(ocr_module, "_TESSERACT", os.fspath(fake))
    text_box = box("Crash test")
    text, treatment, out = render(text_box, flat(SIZE))
    verdict = gate_box(out, text_box, text, treatment)
    ocr = next(c for c in verdict.checks if c.name == "ocr")
    assert not ocr.passed and "signal 8" in ocr.detail
    assert verdict.ocr_text is None and not verdict.passed
    assert verdict.failed_checks == ["ocr"]


def test_a_hanging_ocr_times_out(tmp_path, monkeypatch):
    fake = tmp_path / "tesseract"
    fake.write_text("#!/bin/sh\nexec sleep 5\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(ocr_module, "_TESSERACT", os.fspath(fake))
    read = read_line(np.full((40, 80), 255, np.uint8), timeout_s=0.2, attempts=2)
    assert read.text is None and read.attempts == 2 and "timed out" in read.failure


def test_gate_needs_the_box_region_in_the_image():
    text_box = box("Outside")
    text, treatment, out = render(text_box, flat(SIZE))
    with pytest.raises(ValueError, match="does not hold"):
        gate_box(out[:100], text_box, text, treatment)


def test_copy_normalisation_and_character_error_rate():
    assert normalise_copy("  Ｓａｌｅ\n ends  ") == "Sale ends"
    assert normalise_copy("SALE", case_sensitive=False) == "sale"
    assert character_error_rate("SALE", "SALE") == 0
    assert character_error_rate("SAIE", "SALE") == 0.25
    assert character_error_rate("", "SALE") == 1


@pytest.mark.parametrize(
    ("reading", "fidelity_passed", "passed"),
    [
        ("ONLY III", True, True),  # off by look-alikes only: the pixels decide
        ("ONLY III", False, False),
        ("ONLY Ilk", True, False),  # any other difference fails
    ],
)
def test_a_reading_off_only_by_look_alikes_defers_to_fidelity(
    monkeypatch, reading, fidelity_passed, passed
):
    from core.typography import readback
    from core.typography.ocr import OcrRead
    from core.typography.schema import GateThresholds

    text = typeset(box("ONLY Ill", cap=16), SIZE, "b")
    readings = iter([reading, "ONLY Ill"])  # the render, then the clean reference
    monkeypatch.setattr(readback, "read_line", lambda *args: OcrRead(next(readings), 1))
    check, read = readback.ocr_check(
        lambda area: 1 - text.alpha[area] / 255, text, fidelity_passed, GateThresholds()
    )
    assert (check.passed, check.value, read.text) == (passed, reading, reading)
    if reading == "ONLY III":
        assert "only by look-alikes" in check.detail
