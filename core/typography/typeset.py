"""Typesetting: a box's copy shaped, sized to fit and rendered at the final resolution.

The font size is the largest (found by binary search) at which the copy
wraps into at most `max_lines` lines inside the box; a copy that does not
fit at the minimum cap height is refused with a `RequestError` naming the
box. The glyph alpha is rendered once, at the output size (a billboard's
text is set at billboard resolution, never upscaled), and covers only the
box and a margin around it, so that a 16k canvas costs no more than its box.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.errors import RequestError
from core.typography.fonts import DEFAULT_FONT_DIR, SHAPING, load_font, resolve_font
from core.typography.geometry import PixelBox
from core.typography.schema import TextBox, TextSpec

__all__ = ["Line", "TypesetText", "render_alpha", "typeset", "typeset_spec"]

MARGIN_CAPS = 0.5
"""The margin kept around the box, in cap heights: it must hold the contrast solver's
stroke, plate padding and ring (`core.typography.contrast`)."""


@dataclass(frozen=True)
class Line:
    """One typeset line: its text, its left-baseline origin and its ink, in canvas pixels."""

    text: str
    origin: tuple[int, int]
    ink: PixelBox


@dataclass(frozen=True)
class TypesetText:
    """A box's copy typeset at the output size; `alpha` covers `region` of the canvas."""

    field: str
    copy: str
    font_path: Path
    font_size: int
    cap_height_px: int
    canvas_size: tuple[int, int]
    block: PixelBox
    region: PixelBox
    lines: tuple[Line, ...]
    ink_box: PixelBox
    alpha: np.ndarray
    shaping: str

    @property
    def text(self) -> str:
        """The copy as typeset: NFKC, its lines joined by single spaces."""
        return " ".join(line.text for line in self.lines)

    def block_fraction(self) -> tuple[float, float, float, float]:
        """The box (with its height resolved) as (x, y, w, h) fractions of the canvas."""
        width, height = self.canvas_size
        b = self.block
        return b.x0 / width, b.y0 / height, b.width / width, b.height / height

    def record(self) -> dict[str, object]:
        """What a run record keeps of the typesetting."""
        return {
            "box": self.field,
            "font": self.font_path.name,
            "font_size_px": self.font_size,
            "cap_height_px": self.cap_height_px,
            "lines": [line.text for line in self.lines],
            "block": self.block.as_list(),
            "ink_box": self.ink_box.as_list(),
            "shaping": self.shaping,
        }


def typeset_spec(spec: TextSpec, canvas_size: tuple[int, int]) -> list[TypesetText]:
    """Every box of `spec` typeset at `canvas_size`; `RequestError` names one that cannot fit."""
    return [
        typeset(box, canvas_size, f"{spec.field}[{index}]", spec.font_dir)
        for index, box in enumerate(spec.boxes)
    ]


@dataclass(frozen=True)
class _Fit:
    lines: list[str]
    line_height: int
    ascent: int


def typeset(
    box: TextBox,
    canvas_size: tuple[int, int],
    field: str,
    font_dir: Path = DEFAULT_FONT_DIR,
) -> TypesetText:
    """Typeset `box` on a canvas of `canvas_size` (width, height) at the largest size that fits.

    `field` names the box in errors, e.g. ``text_boxes[1]``. Raises `RequestError`
    on ``<field>.copy`` when the copy cannot fit at `box.min_cap_height_px`.
    """
    canvas_w, canvas_h = canvas_size
    font_path = resolve_font(box, field, font_dir)
    paragraphs = [" ".join(p.split()) for p in unicodedata.normalize("NFKC", box.text).split("\n")]
    paragraphs = [p for p in paragraphs if p]
    anchor = box.anchor
    x0, y0 = round(anchor.x * canvas_w), round(anchor.y * canvas_h)
    width = round((anchor.x + anchor.w) * canvas_w) - x0
    height = round((anchor.y + anchor.h) * canvas_h) - y0 if anchor.h is not None else canvas_h - y0

    def fit(size: int) -> _Fit | str:
        return _fit(font_path, size, paragraphs, width, height, box)

    low = _smallest_size(font_path, box.min_cap_height_px)
    first = fit(low)
    if isinstance(first, str):
        raise RequestError(
            f"{field}.copy",
            f"does not fit box {field} ({width}x{height} px, max_lines={box.max_lines}) "
            f"at the minimum cap height of {box.min_cap_height_px} px: {first}",
        )
    size, layout = _largest_fit(low, first, fit)
    block_h = height if anchor.h is not None else len(layout.lines) * layout.line_height
    block = PixelBox(x0, y0, x0 + width, y0 + block_h)
    cap = _cap_height(font_path, size)
    region = block.expanded(math.ceil(MARGIN_CAPS * cap) + 2).clipped(canvas_w, canvas_h)
    placed = _place(font_path, size, layout, block, box)
    alpha = _render(font_path, size, placed, region, 0)
    lines = tuple(
        Line(t, origin, _ink_in_band(alpha, region, origin, layout)) for t, origin in placed
    )
    ink_box = lines[0].ink
    for line in lines[1:]:
        ink_box = ink_box.union(line.ink)
    return TypesetText(
        field=field,
        copy=box.text,
        font_path=font_path,
        font_size=size,
        cap_height_px=cap,
        canvas_size=(canvas_w, canvas_h),
        block=block,
        region=region,
        lines=lines,
        ink_box=ink_box,
        alpha=alpha,
        shaping=SHAPING,
    )


def render_alpha(text: TypesetText, stroke_width: int = 0) -> np.ndarray:
    """The glyph coverage (uint8, 255 = fully ink) over `text.region`, optionally stroked."""
    placed = [(line.text, line.origin) for line in text.lines]
    return _render(text.font_path, text.font_size, placed, text.region, stroke_width)


def _render(
    font_path: Path,
    size: int,
    placed: list[tuple[str, tuple[int, int]]],
    region: PixelBox,
    stroke_width: int,
) -> np.ndarray:
    image = Image.new("L", (region.width, region.height), 0)
    draw = ImageDraw.Draw(image)
    font = load_font(font_path, size)
    for line, (x, y) in placed:
        draw.text(
            (x - region.x0, y - region.y0),
            line,
            font=font,
            fill=255,
            anchor="ls",
            stroke_width=stroke_width,
            stroke_fill=255,
        )
    return np.asarray(image)


def _fit(
    font_path: Path, size: int, paragraphs: list[str], width: int, height: int, box: TextBox
) -> _Fit | str:
    """The wrapped lines at `size`, or why they do not fit."""
    font = load_font(font_path, size)
    ascent, descent = font.getmetrics()
    line_height = ascent + descent
    lines: list[str] = []
    for paragraph in paragraphs:
        wrapped = _wrap(paragraph, lambda s: _ink_width(font_path, size, s), width)
        if isinstance(wrapped, str):
            return wrapped
        lines.extend(wrapped)
    if len(lines) > box.max_lines:
        return f"it needs {len(lines)} lines, more than max_lines={box.max_lines}"
    if len(lines) * line_height > height:
        return f"{len(lines)} lines need {len(lines) * line_height} px of height"
    if box.max_cap_height_px is not None and _cap_height(font_path, size) > box.max_cap_height_px:
        return f"cap height above max_cap_height_px={box.max_cap_height_px}"
    return _Fit(lines, line_height, ascent)


def _wrap(paragraph: str, measure: Callable[[str], int], width: int) -> list[str] | str:
    """Greedy wrapping (fewest lines); a word wider than the box is a reason string."""
    lines: list[str] = []
    current = ""
    for word in paragraph.split(" "):
        if measure(word) > width:
            return f"the word {word!r} is wider than the box"
        candidate = f"{current} {word}" if current else word
        if measure(candidate) <= width:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    return lines


def _largest_fit(low: int, first: _Fit, fit: Callable[[int], _Fit | str]) -> tuple[int, _Fit]:
    """The largest size that fits, by doubling from `low` and then bisecting."""
    best, best_fit = low, first
    high = low * 2
    while not isinstance(result := fit(high), str):
        best, best_fit = high, result
        high *= 2
    while high - best > 1:
        middle = (best + high) // 2
        result = fit(middle)
        if isinstance(result, str):
            high = middle
        else:
            best, best_fit = middle, result
    return best, best_fit


def _place(
    font_path: Path, size: int, layout: _Fit, block: PixelBox, box: TextBox
) -> list[tuple[str, tuple[int, int]]]:
    """Each line's left-baseline origin, aligning its box (advances and ink) in the block."""
    text_h = len(layout.lines) * layout.line_height
    spare_h = block.height - text_h
    top = block.y0 + {"top": 0, "middle": spare_h // 2, "bottom": spare_h}[box.valign]
    font = load_font(font_path, size)
    placed = []
    for i, line in enumerate(layout.lines):
        left, _, right, _ = font.getbbox(line, anchor="ls")
        spare_w = block.width - (right - left)
        shift = {"left": 0, "center": spare_w // 2, "right": spare_w}[box.align]
        baseline = top + layout.ascent + i * layout.line_height
        placed.append((line, (block.x0 + shift - left, baseline)))
    return placed


def _ink_in_band(
    alpha: np.ndarray, region: PixelBox, origin: tuple[int, int], layout: _Fit
) -> PixelBox:
    """The ink box of one line, measured in its band of the rendered alpha."""
    top = origin[1] - layout.ascent - region.y0
    band = alpha[max(0, top) : max(0, top + layout.line_height)]
    rows = np.flatnonzero(band.any(axis=1))
    cols = np.flatnonzero(band.any(axis=0))
    if not rows.size:
        return PixelBox(origin[0], origin[1], origin[0], origin[1])
    y = region.y0 + max(0, top)
    x = region.x0
    return PixelBox(
        x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1
    )


@lru_cache(maxsize=8192)
def _ink_width(font_path: Path, size: int, text: str) -> int:
    """The shaped width of `text` in pixels: its advances, widened by any ink beyond them."""
    left, _, right, _ = load_font(font_path, size).getbbox(text, anchor="ls")
    return right - left


@lru_cache(maxsize=1024)
def _cap_height(font_path: Path, size: int) -> int:
    """The height of a capital H above the baseline, in pixels."""
    return -load_font(font_path, size).getbbox("H", anchor="ls")[1]


def _smallest_size(font_path: Path, min_cap_height: int) -> int:
    """The smallest font size whose cap height is at least `min_cap_height`."""
    ratio = _cap_height(font_path, 1000) / 1000
    size = max(1, math.floor(min_cap_height / ratio) - 2)
    while _cap_height(font_path, size) < min_cap_height:
        size += 1
    return size
