"""Text boxes in requests and stages, the typography gate's thresholds, a render's `TextSpec`.

A text box places one piece of copy on the canvas. Its anchor is given in
fractions of the canvas, so one box means the same place at the base model's
size and at the billboard's final size; the copy is typeset only at the final
one. Data only: typesetting, compositing and the gate live in the modules
beside this one and import it, never the other way round.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_FONT_DIR",
    "DEFAULT_THRESHOLDS",
    "Align",
    "Anchor",
    "FontHint",
    "GateThresholds",
    "TextBox",
    "TextMode",
    "TextSpec",
    "VAlign",
]

DEFAULT_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
"""Where Debian's `fonts-dejavu-core` installs DejaVu."""

FontHint = Literal[
    "sans",
    "sans-bold",
    "sans-condensed",
    "sans-condensed-bold",
    "serif",
    "serif-strong",
    "serif-italic",
    "mono",
    "mono-bold",
]
Align = Literal["left", "center", "right"]
VAlign = Literal["top", "middle", "bottom"]
TextMode = Literal["overlay", "integrated"]

_HEX_INK = re.compile(r"^#[0-9a-fA-F]{6}$")
_FONT_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*\.(ttf|otf|ttc)$", re.IGNORECASE)
_EPSILON = 1e-9


class Anchor(BaseModel):
    """Where a box sits, in fractions of the canvas (0, 0 is the top left)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x: float = Field(ge=0, lt=1, description="Left edge, as a fraction of the canvas width.")
    y: float = Field(ge=0, lt=1, description="Top edge, as a fraction of the canvas height.")
    w: float = Field(gt=0, le=1, description="Width, as a fraction of the canvas width.")
    h: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Height, as a fraction of the canvas height; unset: as tall as the "
        "typeset copy (at most down to the canvas bottom).",
    )

    @model_validator(mode="after")
    def _inside_canvas(self) -> Anchor:
        if self.x + self.w > 1 + _EPSILON:
            raise ValueError(f"x + w must be <= 1, got x={self.x} + w={self.w}")
        if self.h is not None and self.y + self.h > 1 + _EPSILON:
            raise ValueError(f"y + h must be <= 1, got y={self.y} + h={self.h}")
        return self


class TextBox(BaseModel):
    """One piece of copy typeset by code into an anchor box, never drawn by a model."""

    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    text: str = Field(
        alias="copy",
        min_length=1,
        max_length=500,
        description="The exact copy to show; a newline forces a line break.",
    )
    font: str | None = Field(
        None,
        max_length=128,
        description="A font file name (.ttf/.otf/.ttc) in the configured font directory; "
        "wins over font_hint.",
    )
    font_hint: FontHint | None = Field(
        None, description="A font family and weight, mapped to a file (DejaVu by default)."
    )
    anchor: Anchor = Field(description="The box, in fractions of the canvas.")
    align: Align = Field("left", description="Horizontal alignment of each line in the box.")
    valign: VAlign = Field(
        "top", description="Vertical alignment of the lines when the box has a height."
    )
    max_lines: int = Field(3, ge=1, le=12, description="The most lines the copy may wrap to.")
    min_cap_height_px: int = Field(
        16,
        ge=8,
        le=4096,
        description="The smallest capital height, in pixels of the final output, the copy "
        "may shrink to; below it the request is refused.",
    )
    max_cap_height_px: int | None = Field(
        None,
        ge=8,
        le=8192,
        description="The largest capital height in pixels of the final output; unset: as "
        "large as fits the box.",
    )
    ink: str = Field(
        "auto",
        description="Ink colour as #rrggbb, or 'auto' for the best contrast with the scene.",
    )
    ink_locked: bool = Field(
        False,
        description="Keep the given ink (a brand colour) even below the contrast target: "
        "the contrast solver then adds a stroke or a plate instead of switching colour.",
    )
    mode: TextMode = Field(
        "overlay",
        description="overlay: the typeset pixels are composited after the last model "
        "pass; integrated: a masked img2img pass blends them into the scene, and a "
        "render that fails the gate falls back to overlay.",
    )
    softness: float = Field(
        0.5,
        ge=0,
        le=1,
        description="integrated mode only: how strongly the scene is blended over the "
        "text (0 = barely, 1 = most); the copy itself is never soft.",
    )

    @field_validator("text")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("copy must contain visible characters")
        bad = sorted({c for c in value if not (c.isprintable() or c == "\n")})
        if bad:
            raise ValueError(f"copy contains control characters {bad!r}")
        return value

    @field_validator("font")
    @classmethod
    def _plain_file_name(cls, value: str | None) -> str | None:
        if value is not None and not _FONT_FILE.match(value):
            raise ValueError(
                f"font must be a plain .ttf/.otf/.ttc file name such as 'DejaVuSans.ttf', "
                f"got {value!r}"
            )
        return value

    @field_validator("ink")
    @classmethod
    def _ink_colour(cls, value: str) -> str:
        if value != "auto" and not _HEX_INK.match(value):
            raise ValueError(f"ink must be 'auto' or a colour like '#1a2b3c', got {value!r}")
        return value.lower()

    @model_validator(mode="after")
    def _consistent(self) -> TextBox:
        if self.ink_locked and self.ink == "auto":
            raise ValueError("ink_locked needs an ink colour, got ink='auto'")
        if self.max_cap_height_px is not None and self.max_cap_height_px < self.min_cap_height_px:
            raise ValueError(
                f"max_cap_height_px must be >= min_cap_height_px, got "
                f"{self.max_cap_height_px} < {self.min_cap_height_px}"
            )
        return self


class GateThresholds(BaseModel):
    """What a rendered box must meet to be delivered (defaults from the typography issue)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_contrast: float = Field(
        4.5, ge=1, le=21, description="5th percentile of the WCAG ratio of ink vs its ring."
    )
    max_delta_e: float = Field(
        2.0, gt=0, le=50, description="overlay: ΔE00 within which a pixel is what was composited."
    )
    min_ink_fraction: float = Field(
        0.99, gt=0, le=1, description="overlay: share of checked pixels that must match."
    )
    min_local_ink_fraction: float = Field(
        0.98,
        gt=0,
        le=1,
        description="overlay: the same share in the worst half-cap window, so that one "
        "wrong character cannot hide in a long copy.",
    )
    min_mask_iou: float = Field(
        0.85, gt=0, le=1, description="integrated: glyph-mask IoU against the typeset reference."
    )
    min_placement_iou: float = Field(
        0.9, gt=0, le=1, description="IoU of the seen ink box with the typeset ink box."
    )
    ocr_case_sensitive: bool = Field(
        True, description="Compare the OCR text case-sensitively (after NFKC and whitespace)."
    )
    ocr_timeout_s: float = Field(
        20.0, gt=0, le=600, description="Wall-clock limit of one tesseract run."
    )
    ocr_attempts: int = Field(
        3, ge=1, le=10, description="Tesseract runs tried when it crashes or times out."
    )


DEFAULT_THRESHOLDS = GateThresholds()


@dataclass(frozen=True)
class TextSpec:
    """The copy a render carries, and how it is set and gated.

    `core.typography.typeset.typeset_spec` typesets it at a size; `field` prefixes
    the field names of the boxes in errors and reports (``text_boxes[0]``).
    """

    boxes: tuple[TextBox, ...]
    font_dir: Path = DEFAULT_FONT_DIR
    thresholds: GateThresholds = DEFAULT_THRESHOLDS
    stray_text: bool = True
    field: str = "text_boxes"
