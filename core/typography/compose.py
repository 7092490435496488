"""Compositing the typeset layer onto a canvas: plate, stroke, then glyphs.

Each layer is blended by its coverage, so where the glyph alpha is 255 the
pixel is exactly the ink and where it is 0 the scene is untouched. Only the
box's region is read and written (in bands of rows), so a billboard canvas
costs no more than its text; a canvas may also be one strip of a larger
image, placed by `origin`.
"""

from __future__ import annotations

import numpy as np

from core.typography.colour_science import RGB, parse_hex
from core.typography.geometry import PixelBox
from core.typography.results import Treatment
from core.typography.typeset import TypesetText, render_alpha

__all__ = ["Treatment", "composite_into", "paint"]

_BAND_ROWS = 256


def paint(background: np.ndarray, text: TypesetText, treatment: Treatment) -> np.ndarray:
    """A copy of `background` (the scene under `text.region`) with the text painted on."""
    out = np.array(background, dtype=np.uint8, copy=True)
    _paint(out, text, treatment, text.region)
    return out


def composite_into(
    canvas: np.ndarray,
    text: TypesetText,
    treatment: Treatment,
    origin: tuple[int, int] = (0, 0),
) -> None:
    """Paint the text onto `canvas` in place, touching only the box's region.

    `canvas` is uint8 RGB; `origin` is the full-canvas (x, y) of its top-left
    pixel, so that one strip of a streamed image can be painted on its own.
    """
    if canvas.dtype != np.uint8 or canvas.ndim != 3 or canvas.shape[2] != 3:
        raise ValueError(f"canvas must be uint8 (H, W, 3), got {canvas.dtype} {canvas.shape}")
    x, y = origin
    extent = PixelBox(x, y, x + canvas.shape[1], y + canvas.shape[0])
    area = text.region.intersection(extent)
    if area.area:
        _paint(canvas[area.shifted(-x, -y).slices()], text, treatment, area)


def _paint(pixels: np.ndarray, text: TypesetText, treatment: Treatment, area: PixelBox) -> None:
    """Blend the layers over `pixels`, which show `area` of the canvas (inside the region)."""
    inside = area.shifted(-text.region.x0, -text.region.y0).slices()
    layers: list[tuple[np.ndarray, RGB]] = []
    if treatment.plate is not None and treatment.plate_colour is not None:
        plate = np.zeros((text.region.height, text.region.width), np.uint8)
        plate[PixelBox(*treatment.plate).shifted(-text.region.x0, -text.region.y0).slices()] = 255
        layers.append((plate[inside], parse_hex(treatment.plate_colour)))
    if treatment.stroke_width and treatment.stroke_colour is not None:
        stroke = render_alpha(text, treatment.stroke_width)
        layers.append((stroke[inside], parse_hex(treatment.stroke_colour)))
    layers.append((text.alpha[inside], parse_hex(treatment.ink)))
    for top in range(0, pixels.shape[0], _BAND_ROWS):
        rows = slice(top, top + _BAND_ROWS)
        band = pixels[rows].astype(np.float32)
        for alpha, colour in layers:
            coverage = alpha[rows, :, None].astype(np.float32) / 255
            band += (np.array(colour, np.float32) - band) * coverage
        pixels[rows] = np.rint(band).astype(np.uint8)
