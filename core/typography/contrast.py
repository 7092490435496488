"""Local contrast of the ink against the scene, and the treatment that makes it legible.

Contrast is measured where legibility is decided: on a ring of background
around the glyphs (`RING_CAPS` cap heights wide), as the 5th percentile of
the WCAG contrast ratio between the ink and each ring pixel, so that 95 % of
the letters' surroundings reach it. Below the target the solver escalates:
switch the ink (the best of the candidates, black and white by default, unless
the ink is locked), then add a stroke (narrower than the ring, so it rescues
a background that is only locally bad), then put a plate behind the copy.
A stroke or plate keeps the requested ink when the box has one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.typography.colour_science import (
    RGB,
    contrast_ratio,
    parse_hex,
    relative_luminance,
    to_hex,
)
from core.typography.compose import Treatment, paint
from core.typography.schema import TextBox
from core.typography.typeset import TypesetText, render_alpha

__all__ = [
    "BLACK_AND_WHITE",
    "RING_CAPS",
    "glyph_core",
    "local_contrast",
    "ring_mask",
    "ring_width",
    "solve_contrast",
    "stroke_width",
]

BLACK_AND_WHITE: tuple[RGB, RGB] = ((0, 0, 0), (255, 255, 255))
RING_CAPS = 0.2
"""Width of the background ring the contrast is measured on, in cap heights."""
STROKE_CAPS = 0.1
"""Width of the stroke the solver adds, in cap heights."""
PLATE_CAPS = 0.35
"""Padding of the plate around the ink, in cap heights (wider than the ring)."""


def ring_width(text: TypesetText) -> int:
    """The ring width in pixels for this copy (at least 2)."""
    return max(2, round(RING_CAPS * text.cap_height_px))


def stroke_width(text: TypesetText) -> int:
    """The width in pixels of the stroke the solver adds (at least 1, less than the ring)."""
    return max(1, round(STROKE_CAPS * text.cap_height_px))


def ring_mask(text: TypesetText) -> np.ndarray:
    """Background pixels within `ring_width` of a glyph, over `text.region` (bool)."""
    return (render_alpha(text, ring_width(text)) > 0) & (text.alpha == 0)


def glyph_core(text: TypesetText) -> np.ndarray:
    """The pixels fully covered by a glyph, over `text.region` (bool)."""
    return text.alpha == text.alpha.max()


def local_contrast(pixels: np.ndarray, ink: RGB, ring: np.ndarray) -> float:
    """5th percentile of the WCAG contrast ratio of `ink` against `pixels[ring]`."""
    return _fifth_percentile(ink, relative_luminance(pixels[ring]))


def _fifth_percentile(ink: RGB, ring_luminance: np.ndarray) -> float:
    if not ring_luminance.size:
        return 21.0
    ratios = contrast_ratio(relative_luminance(np.array(ink)), ring_luminance)
    return float(np.percentile(ratios, 5))


def solve_contrast(
    background: np.ndarray,
    text: TypesetText,
    box: TextBox,
    target: float = 4.5,
    candidates: Sequence[RGB] = BLACK_AND_WHITE,
) -> Treatment:
    """The lightest treatment that makes the copy reach `target` over `background`.

    `background` is the scene under `text.region` (uint8 RGB, the region's shape).
    Returns the treatment with the contrast it achieves; when even a plate
    cannot reach the target (a locked mid-tone ink and a target above 4.58),
    the plate is returned with the contrast it gets and the gate will say so.
    """
    ring = ring_mask(text)
    scene_luminance = relative_luminance(background[ring])
    requested = None if box.ink == "auto" else parse_hex(box.ink)

    def measure(treatment: Treatment) -> Treatment:
        painted = paint(background, text, treatment)
        contrast = local_contrast(painted, parse_hex(treatment.ink), ring)
        return treatment.model_copy(update={"contrast": contrast})

    def plain(ink: RGB, kind: str) -> Treatment:
        return _treatment(box, kind, ink, _fifth_percentile(ink, scene_luminance))

    if requested is not None:
        given = plain(requested, "as_given")
        if given.contrast >= target:
            return given
    if requested is None or not box.ink_locked:
        kind = "ink" if requested is None else "switched"
        best = max((plain(c, kind) for c in candidates), key=lambda t: t.contrast)
        if best.contrast >= target:
            return best
        ink = requested or parse_hex(best.ink)
    else:
        ink = requested
    edge = _opposite(ink)
    stroked = measure(_treatment(box, "stroke", ink, stroke_width=stroke_width(text), stroke=edge))
    if stroked.contrast >= target:
        return stroked
    pad = max(ring_width(text) + 1, round(PLATE_CAPS * text.cap_height_px))
    plate = text.ink_box.expanded(pad).intersection(text.region)
    return measure(_treatment(box, "plate", ink, plate=tuple(plate.as_list()), plate_colour=edge))


def _opposite(ink: RGB) -> RGB:
    """Black or white, whichever contrasts more with `ink`."""
    luminance = relative_luminance(np.array(BLACK_AND_WHITE))
    ratios = contrast_ratio(relative_luminance(np.array(ink)), luminance)
    return BLACK_AND_WHITE[int(np.argmax(ratios))]


def _treatment(
    box: TextBox,
    kind: str,
    ink: RGB,
    contrast: float = 1.0,
    stroke_width: int = 0,
    stroke: RGB | None = None,
    plate: tuple[int, int, int, int] | None = None,
    plate_colour: RGB | None = None,
) -> Treatment:
    return Treatment(
        kind=kind,
        requested_ink=box.ink,
        ink=to_hex(ink),
        stroke_width=stroke_width,
        stroke_colour=to_hex(stroke) if stroke else None,
        plate=plate,
        plate_colour=to_hex(plate_colour) if plate_colour else None,
        contrast=contrast,
    )
