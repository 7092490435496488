"""`--text-boxes FILE`: the text boxes of a render, read from a YAML or JSON list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from core.errors import RequestError

TextBoxesOption = Annotated[
    Path | None,
    typer.Option(
        "--text-boxes",
        help="YAML or JSON list of text boxes (copy, anchor, font_hint, ...; see "
        "docs/typography.md), typeset after the last model pass and gated.",
    ),
]


def read_text_boxes(path: Path | None) -> list[dict[str, Any]]:
    """The boxes in `path` (none without a path); the cluster validates each box."""
    if path is None:
        return []
    try:
        boxes = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RequestError("text-boxes", f"{path} is not YAML or JSON: {exc}") from None
    if not isinstance(boxes, list) or not all(isinstance(box, dict) for box in boxes):
        raise RequestError("text-boxes", f"{path} must hold a list of text boxes (mappings)")
    return boxes
