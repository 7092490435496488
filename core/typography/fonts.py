"""Font files: a box's font or font hint resolved to a file, loaded with HarfBuzz shaping.

Shaping (kerning, ligatures) comes from Pillow's raqm layout, which uses
HarfBuzz and FriBiDi. Pillow's wheels carry raqm and HarfBuzz but load
FriBiDi from the system (Debian: `libfribidi0`); without it Pillow falls back
to its basic layout and `SHAPING` says so.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from PIL import ImageFont, features

from core.errors import RequestError
from core.typography.schema import DEFAULT_FONT_DIR, FontHint, TextBox

__all__ = ["DEFAULT_FONT_DIR", "FONT_HINTS", "SHAPING", "load_font", "resolve_font"]

FONT_HINTS: dict[FontHint, str] = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "sans-condensed": "DejaVuSansCondensed.ttf",
    "sans-condensed-bold": "DejaVuSansCondensed-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-strong": "DejaVuSerif-Bold.ttf",
    "serif-italic": "DejaVuSerif-Italic.ttf",
    "mono": "DejaVuSansMono.ttf",
    "mono-bold": "DejaVuSansMono-Bold.ttf",
}
"""Font hints → file names in the font directory (all in `fonts-dejavu-core`)."""

SHAPING: Literal["raqm", "basic"] = "raqm" if features.check("raqm") else "basic"
"""The layout engine every font is loaded with."""

_ENGINE = ImageFont.Layout.RAQM if SHAPING == "raqm" else ImageFont.Layout.BASIC


def resolve_font(box: TextBox, field: str, font_dir: Path = DEFAULT_FONT_DIR) -> Path:
    """The font file of a box: its `font`, else its `font_hint`, else plain sans.

    Raises `RequestError` on `<field>.font` when the file is not in `font_dir`.
    """
    name = box.font or FONT_HINTS[box.font_hint or "sans"]
    path = font_dir / name
    if not path.is_file():
        where = f"{field}.font" if box.font else f"{field}.font_hint"
        available = sorted(p.name for p in font_dir.glob("*.[ot]t[fc]"))
        raise RequestError(
            where, f"font file {name!r} is not in the font directory; available: {available}"
        )
    return path


@lru_cache(maxsize=512)
def load_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    """The font at `size` pixels per em, shaped by raqm when Pillow has it."""
    return ImageFont.truetype(str(path), size, layout_engine=_ENGINE)
