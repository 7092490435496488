"""The typography gate: does a rendered box really show its copy, legibly, where asked?

Per box, on the final image, in this order:

- fidelity: overlay: the glyph pixels are the ink (`fidelity.overlay_fidelity`);
  integrated: the seen glyph mask matches the typeset one by IoU;
- ocr: tesseract reads the copy back (`readback.ocr_check`); a crashed or
  timed-out OCR is a failure, never a pass;
- contrast: 5th percentile of the WCAG ratio of the seen ink vs its ring;
- placement: the box of the seen ink overlaps the typeset one (overlay: the
  inked part of the typeset glyphs; integrated: the seen glyph mask);
- inside_box: the typeset ink lies inside the anchor box (nothing clipped);
- cap_height: the set cap height meets the box's minimum.

`stray_text_check` looks for the model's own letters outside the boxes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from core.typography.colour_science import parse_hex
from core.typography.compose import Treatment, paint
from core.typography.contrast import glyph_core, local_contrast, ring_mask, stroke_width
from core.typography.fidelity import (
    mask_fidelity,
    matching_pixels,
    overlay_fidelity,
    placement,
    seen_glyphs,
)
from core.typography.geometry import PixelBox
from core.typography.ocr import OcrRead, find_words
from core.typography.readback import character_error_rate, normalise_copy, ocr_check
from core.typography.results import BoxGateResult, GateCheck
from core.typography.schema import DEFAULT_THRESHOLDS, GateThresholds, TextBox, TextMode
from core.typography.typeset import TypesetText, render_alpha

__all__ = ["DEFAULT_THRESHOLDS", "gate_box", "stray_text_check"]


def gate_box(
    image: np.ndarray,
    box: TextBox,
    text: TypesetText,
    treatment: Treatment,
    *,
    mode: TextMode | None = None,
    thresholds: GateThresholds = DEFAULT_THRESHOLDS,
    origin: tuple[int, int] = (0, 0),
    scene: np.ndarray | None = None,
) -> BoxGateResult:
    """Gate one box of a rendered uint8 RGB `image` (a canvas, or a strip placed at `origin`).

    `mode` defaults to the box's; gate an overlay fallback with ``mode="overlay"``.
    `scene` is the image under `text.region` from before the overlay (the crop
    given to `solve_contrast`): with it, overlay fidelity checks every pixel of
    the glyphs and their ring against the composite, which also catches ink
    added where there should be none. Raises `ValueError` when the image does
    not hold the box's region.
    """
    started = time.perf_counter()
    mode = mode or box.mode
    pixels = _box_pixels(image, text, origin, scene)
    core, ring = glyph_core(text), ring_mask(text)
    if mode == "overlay":
        fidelity, where = _overlay_fidelity(pixels, text, treatment, scene, ring, thresholds)
    else:
        fidelity, where = _integrated_fidelity(pixels, text, ring, thresholds)
    seen_ink = np.median(pixels[core], axis=0).astype(np.uint8)
    ocr, read = _read_back(pixels, text, seen_ink, ring, fidelity.passed, thresholds)
    checks = [
        fidelity,
        ocr,
        _contrast_check(pixels, seen_ink, ring, thresholds),
        where,
        *_layout_checks(box, text),
    ]
    expected = normalise_copy(text.text, thresholds.ocr_case_sensitive)
    return BoxGateResult(
        box=text.field,
        mode=mode,
        passed=all(c.passed for c in checks),
        checks=checks,
        expected_text=expected,
        ocr_text=read.text,
        character_error_rate=(
            None if read.text is None else round(character_error_rate(read.text, expected), 4)
        ),
        seconds=round(time.perf_counter() - started, 3),
    )


def _box_pixels(
    image: np.ndarray, text: TypesetText, origin: tuple[int, int], scene: np.ndarray | None
) -> np.ndarray:
    """The pixels of the box's region in `image` placed at `origin` (checked against `scene`)."""
    x, y = origin
    if not PixelBox(x, y, x + image.shape[1], y + image.shape[0]).contains(text.region):
        raise ValueError(f"image at origin {origin} does not hold region {text.region}")
    pixels = image[text.region.shifted(-x, -y).slices()]
    if scene is not None and scene.shape != pixels.shape:
        raise ValueError(f"scene must be the region's {pixels.shape}, got {scene.shape}")
    return pixels


def _overlay_fidelity(
    pixels: np.ndarray,
    text: TypesetText,
    treatment: Treatment,
    scene: np.ndarray | None,
    ring: np.ndarray,
    thresholds: GateThresholds,
) -> tuple[GateCheck, GateCheck]:
    """Fidelity and placement of an overlay: are the pixels what was composited?

    Without the scene only the glyph cores are held to the ink; with it, every pixel
    of the glyphs, their ring and whatever the layer changed is held to the composite.
    """
    core, cap = glyph_core(text), text.cap_height_px
    if scene is None:
        checked, intended = core, np.array(parse_hex(treatment.ink), np.uint8)
        against = f"the ink {treatment.ink}"
    else:
        intended = paint(scene, text, treatment)
        checked = (text.alpha > 0) | ring | np.any(intended != scene, axis=-1)
        against = "the composited layer"
    matched = matching_pixels(pixels, intended, checked, thresholds.max_delta_e)
    fidelity = overlay_fidelity(checked, matched, cap, thresholds, against)
    return fidelity, placement(matched & core, core, cap, thresholds)


def _integrated_fidelity(
    pixels: np.ndarray, text: TypesetText, ring: np.ndarray, thresholds: GateThresholds
) -> tuple[GateCheck, GateCheck]:
    """Fidelity and placement of an integrated box: the seen glyph mask against the typeset."""
    seen = seen_glyphs(pixels, (text.alpha > 0) | ring, glyph_core(text), ring)
    typeset_mask = text.alpha >= 128
    fidelity = mask_fidelity(seen, typeset_mask, thresholds)
    return fidelity, placement(seen, typeset_mask, text.cap_height_px, thresholds)


def _read_back(
    pixels: np.ndarray,
    text: TypesetText,
    seen_ink: np.ndarray,
    ring: np.ndarray,
    fidelity_passed: bool,
    thresholds: GateThresholds,
) -> tuple[GateCheck, OcrRead]:
    """OCR of the copy, on the coverage recovered from the seen ink and background."""
    background = np.median(pixels[ring], axis=0) if ring.any() else 255 - seen_ink
    legible = render_alpha(text, max(1, stroke_width(text) // 2)) > 0
    lightness = _coverage_lightness(pixels, seen_ink, background, legible)
    return ocr_check(lightness, text, fidelity_passed, thresholds)


def _contrast_check(
    pixels: np.ndarray, seen_ink: np.ndarray, ring: np.ndarray, thresholds: GateThresholds
) -> GateCheck:
    contrast = local_contrast(pixels, tuple(int(v) for v in seen_ink), ring)
    return GateCheck(
        name="contrast",
        passed=contrast >= thresholds.min_contrast,
        value=round(contrast, 3),
        threshold=thresholds.min_contrast,
        detail="5th percentile of the WCAG ratio of the seen ink vs its ring",
    )


def _layout_checks(box: TextBox, text: TypesetText) -> list[GateCheck]:
    """inside_box and cap_height: what typesetting promised, checked on the typeset copy."""
    cap = text.cap_height_px
    return [
        GateCheck(
            name="inside_box",
            passed=text.block.contains(text.ink_box),
            value=str(text.ink_box.as_list()),
            threshold=str(text.block.as_list()),
            detail="typeset ink box inside the anchor box",
        ),
        GateCheck(
            name="cap_height",
            passed=cap >= box.min_cap_height_px,
            value=float(cap),
            threshold=float(box.min_cap_height_px),
        ),
    ]


def stray_text_check(
    image: np.ndarray,
    boxes: Sequence[PixelBox],
    min_confidence: float = 80.0,
    min_chars: int = 3,
    timeout_s: float = 60.0,
) -> GateCheck:
    """No confident word of `min_chars`+ letters or digits outside `boxes` (image pixels).

    The boxes are filled with the image's median colour first. Run it on an
    image small enough for tesseract (the base render, or the output scaled
    down) with the boxes scaled alike; pass the typeset ink boxes (grown by the
    ring) to also catch letters painted inside an anchor box beside the copy.
    """
    blanked = np.array(image, dtype=np.uint8, copy=True)
    fill = np.median(blanked.reshape(-1, blanked.shape[-1]), axis=0).astype(np.uint8)
    height, width = blanked.shape[:2]
    for b in boxes:
        blanked[b.clipped(width, height).slices()] = fill
    read = find_words(blanked, min_confidence=min_confidence, timeout_s=timeout_s)
    if read.text is None:
        return GateCheck(name="stray_text", passed=False, value=None, detail=str(read.failure))
    strays = [w.text for w in read.words if sum(c.isalnum() for c in w.text) >= min_chars]
    return GateCheck(
        name="stray_text",
        passed=not strays,
        value=float(len(strays)),
        threshold=0.0,
        detail=f"confident words outside the boxes: {strays}" if strays else "",
    )


def _coverage_lightness(
    pixels: np.ndarray, ink: np.ndarray, background: np.ndarray, near: np.ndarray
) -> Callable[[tuple[slice, slice]], np.ndarray]:
    """0 (ink) to 1 (background) per pixel `near` the glyphs, by projection onto ink − background.

    This inverts the compositing, so a clean overlay gives OCR exactly the
    typeset coverage. Beyond half a stroke's width around the glyphs (short of
    a stroke's soft outer edge) everything reads as background: the ring there
    is the contrast check's business, the scene's own letters the stray-text
    check's.
    """
    axis = (ink.astype(np.float32) - background).astype(np.float32)
    scale = 1 / max(float(axis @ axis), 1.0)

    def lightness(area: tuple[slice, slice]) -> np.ndarray:
        coverage = (pixels[area].astype(np.float32) - background) @ axis * scale
        return np.where(near[area], 1 - np.clip(coverage, 0, 1), 1.0)

    return lightness
