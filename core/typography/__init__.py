"""Typography that stays correct: copy typeset by code, composited after the last model pass.

The flow for one text box, all at the final output resolution:

    text = typeset(box, (width, height), field="text_boxes[0]")   # 422 if it cannot fit
    scene = canvas[text.region.slices()].copy()                   # the region before overlay
    treatment = solve_contrast(scene, text, box)
    composite_into(canvas, text, treatment)                       # touches the region only
    verdict = gate_box(canvas, box, text, treatment, scene=scene) # JSON for the run record

Before that, `quiet_negative_prompt` and `quiet_zone_mask` keep the model's
own letters out of the boxes. Nothing here imports Ray.
"""

from core.typography.compose import Treatment, composite_into, paint
from core.typography.contrast import local_contrast, ring_mask, solve_contrast
from core.typography.fonts import DEFAULT_FONT_DIR, FONT_HINTS, SHAPING, resolve_font
from core.typography.gate import DEFAULT_THRESHOLDS, gate_box, stray_text_check
from core.typography.geometry import PixelBox
from core.typography.modes import delivery_mode, integrated_strength, integration_box
from core.typography.ocr import tesseract_available
from core.typography.quiet import (
    QUIET_ZONE_NEGATIVE_TERMS,
    quiet_negative_prompt,
    quiet_zone_mask,
)
from core.typography.readback import character_error_rate, normalise_copy
from core.typography.results import BoxGateResult, GateCheck
from core.typography.schema import Anchor, GateThresholds, TextBox
from core.typography.typeset import Line, TypesetText, render_alpha, typeset

__all__ = [
    "DEFAULT_FONT_DIR",
    "DEFAULT_THRESHOLDS",
    "FONT_HINTS",
    "QUIET_ZONE_NEGATIVE_TERMS",
    "SHAPING",
    "Anchor",
    "BoxGateResult",
    "GateCheck",
    "GateThresholds",
    "Line",
    "PixelBox",
    "TextBox",
    "Treatment",
    "TypesetText",
    "character_error_rate",
    "composite_into",
    "delivery_mode",
    "gate_box",
    "integrated_strength",
    "integration_box",
    "local_contrast",
    "normalise_copy",
    "paint",
    "quiet_negative_prompt",
    "quiet_zone_mask",
    "render_alpha",
    "resolve_font",
    "ring_mask",
    "solve_contrast",
    "stray_text_check",
    "tesseract_available",
    "typeset",
]
