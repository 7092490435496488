"""Backgrounds and a render helper for the typography tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.typography import TextBox, Treatment, TypesetText, composite_into, solve_contrast
from core.typography.typeset import typeset as typeset_box


def flat(size: tuple[int, int], colour: tuple[int, int, int] = (40, 90, 160)) -> np.ndarray:
    """A flat canvas of (width, height)."""
    width, height = size
    return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()


def busy(size: tuple[int, int], seed: int = 0, scale: int = 12) -> np.ndarray:
    """Smooth colourful noise at a feature size of about `scale` pixels."""
    width, height = size
    coarse = np.random.default_rng(seed).integers(
        0, 256, (height // scale + 2, width // scale + 2, 3), dtype=np.uint8
    )
    smooth = Image.fromarray(coarse).resize(
        (width + 2 * scale, height + 2 * scale), Image.Resampling.BICUBIC
    )
    return np.asarray(smooth)[:height, :width].copy()


def box(copy: str, cap: int = 32, **fields) -> TextBox:
    """A one-line-ish box across most of the canvas, at exactly `cap` px cap height."""
    anchor = fields.pop("anchor", {"x": 0.05, "y": 0.3, "w": 0.9})
    return TextBox(copy=copy, anchor=anchor, min_cap_height_px=cap, max_cap_height_px=cap, **fields)


def render(text_box: TextBox, canvas: np.ndarray) -> tuple[TypesetText, Treatment, np.ndarray]:
    """Typeset, solve the contrast and composite onto a copy of `canvas`."""
    text = typeset_box(text_box, (canvas.shape[1], canvas.shape[0]), "text_boxes[0]")
    treatment = solve_contrast(canvas[text.region.slices()], text, text_box)
    out = canvas.copy()
    composite_into(out, text, treatment)
    return text, treatment, out
