"""Typography that stays correct: copy typeset by code, composited after the last model pass.

The flow for one text box, all at the final output resolution:

    text = typeset(box, (width, height), field="text_boxes[0]")   # 422 if it cannot fit
    scene = canvas[text.region.slices()].copy()                   # the region before overlay
    treatment = solve_contrast(scene, text, box)
    composite_into(canvas, text, treatment)                       # touches the region only
    verdict = gate_box(canvas, box, text, treatment, scene=scene) # JSON for the run record

Before that, `quiet_negative_prompt` and `quiet_zone_mask` keep the model's
own letters out of the boxes. Nothing here imports Ray.

Data and behaviour are apart: `schema` (boxes, thresholds, `TextSpec`) and
`results` (the reports) are data only; the other modules act on them. The
names below are loaded on first use, so importing a data module (as
`core.schemas` does) loads neither fonts, the compositor nor the OCR gate.
`typeset` is not among them: `core.typography.typeset` is its module, so
import the function from there.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "compose": ("composite_into", "paint"),
    "contrast": ("local_contrast", "ring_mask", "solve_contrast"),
    "fonts": ("FONT_HINTS", "SHAPING", "resolve_font"),
    "gate": ("gate_box", "stray_text_check"),
    "geometry": ("PixelBox",),
    "modes": ("delivery_mode", "integrated_strength", "integration_box"),
    "ocr": ("tesseract_available",),
    "quiet": (
        "QUIET_ZONE_NEGATIVE_TERMS",
        "quiet_boxes",
        "quiet_negative_prompt",
        "quiet_zone_mask",
    ),
    "readback": ("character_error_rate", "normalise_copy"),
    "results": ("BoxGateResult", "GateCheck", "Treatment", "TypographyReport"),
    "schema": (
        "DEFAULT_FONT_DIR",
        "DEFAULT_THRESHOLDS",
        "Anchor",
        "GateThresholds",
        "TextBox",
        "TextSpec",
    ),
    "typeset": ("Line", "TypesetText", "render_alpha", "typeset_spec"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
