"""Quiet zones: keep the model's own letters out of the text boxes before the overlay.

Stages before the overlay get the negative-prompt terms below, and the
layout stage inpaints the dilated box mask, so the typeset copy never has to
fight painted pseudo-text. Boxes are fractions of the canvas, so one mask
recipe serves the base render and every later resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.typography.schema import TextSpec
from core.typography.typeset import typeset_spec

__all__ = ["QUIET_ZONE_NEGATIVE_TERMS", "quiet_boxes", "quiet_negative_prompt", "quiet_zone_mask"]

QUIET_ZONE_NEGATIVE_TERMS = (
    "text",
    "letters",
    "words",
    "writing",
    "typography",
    "caption",
    "watermark",
    "signature",
    "logo",
)
"""Negative-prompt terms that keep letters out of a render with text boxes."""


def quiet_negative_prompt(negative_prompt: str) -> str:
    """`negative_prompt` with the quiet-zone terms it lacks appended, comma-separated."""
    present = {term.strip().lower() for term in negative_prompt.split(",")}
    missing = [term for term in QUIET_ZONE_NEGATIVE_TERMS if term not in present]
    return ", ".join(part for part in [negative_prompt.strip(), *missing] if part)


def quiet_zone_mask(
    boxes: Sequence[tuple[float, float, float, float]],
    size: tuple[int, int],
    margin: float = 0.02,
) -> np.ndarray:
    """The inpaint mask (uint8 (H, W), 255 = repaint) of the boxes, each grown by `margin`.

    `boxes` are (x, y, w, h) fractions of the canvas (`TypesetText.block_fraction()`
    gives a box's with its height resolved); `size` is (width, height) of the
    stage's image; `margin` is a fraction of its shorter side.
    """
    width, height = size
    grow = margin * min(width, height)
    mask = np.zeros((height, width), np.uint8)
    for x, y, w, h in boxes:
        x0, y0 = max(0, int(x * width - grow)), max(0, int(y * height - grow))
        x1 = min(width, int(np.ceil((x + w) * width + grow)))
        y1 = min(height, int(np.ceil((y + h) * height + grow)))
        mask[y0:y1, x0:x1] = 255
    return mask


def quiet_boxes(spec: TextSpec, size: tuple[int, int]) -> list[tuple[float, float, float, float]]:
    """The boxes as (x, y, w, h) canvas fractions, heights resolved at the final `size`."""
    return [text.block_fraction() for text in typeset_spec(spec, size)]
