"""The integrated mode's decisions: how hard to blend, where, and when to fall back to overlay.

In `integrated` mode the overlay is composited first, then a masked img2img
pass over each box at a strength set by `softness` blends it into the scene;
the gate then decides. The pass's pixels replace the overlay only when they
pass the gate; otherwise the box is delivered as the plain overlay (the canvas
never took the pass), and the record keeps both verdicts.
"""

from __future__ import annotations

from typing import Literal

from core.typography.contrast import ring_width
from core.typography.geometry import PixelBox
from core.typography.results import BoxGateResult
from core.typography.schema import TextBox
from core.typography.typeset import TypesetText

__all__ = [
    "INTEGRATED_STRENGTH",
    "delivery_mode",
    "integrated_strength",
    "integration_box",
]

INTEGRATED_STRENGTH = (0.15, 0.5)
"""The img2img strength at softness 0 and at softness 1 (linear between)."""


def integrated_strength(softness: float) -> float:
    """The img2img strength of the integrated pass for a box's `softness` in [0, 1]."""
    if not 0 <= softness <= 1:
        raise ValueError(f"softness must be in [0, 1], got {softness}")
    low, high = INTEGRATED_STRENGTH
    return low + (high - low) * softness


def integration_box(text: TypesetText) -> PixelBox:
    """The canvas rectangle the integrated pass repaints: the ink and its contrast ring."""
    width, height = text.canvas_size
    return text.ink_box.expanded(ring_width(text)).clipped(width, height)


def delivery_mode(
    box: TextBox, integrated: BoxGateResult | None
) -> Literal["overlay", "integrated"]:
    """Which render of the box to deliver.

    overlay boxes: overlay. integrated boxes: the integrated render when its
    gate passed, else overlay (also when there is no integrated verdict).
    """
    if box.mode == "integrated" and integrated is not None and integrated.passed:
        return "integrated"
    return "overlay"
