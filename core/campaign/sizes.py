"""Output sizes of a campaign item: aspect ratios (``4:5``) or exact sizes (``1920x1080``).

An aspect ratio keeps the area of a square of the base size (the model's
native resolution unless the manifest says otherwise), so every ratio costs
about the same to render and stays where the model was trained; each side is
rounded to the model's latent factor. An exact size is rendered as written.
"""

from __future__ import annotations

import math
import re

MAX_SIDE = 262_144  # the largest side the cluster config may allow (LimitsConfig)
MAX_ELONGATION = 16  # widest aspect ratio, either way round
_RATIO = re.compile(r"^(\d{1,6}):(\d{1,6})$")
_EXACT = re.compile(r"^(\d{1,7})x(\d{1,7})$")
_EXAMPLES = "like 1:1, 16:9 or 1920x1080"


def normalize_size(value: object) -> str:
    """Return a size spec in canonical form (``16:9``, ``1920x1080``); `ValueError` if invalid."""
    text = value.strip().lower().replace(" ", "") if isinstance(value, str) else ""
    if ratio := _RATIO.match(text):
        w, h = int(ratio[1]), int(ratio[2])
        if w and h:
            if max(w / h, h / w) > MAX_ELONGATION:
                raise ValueError(f"{value!r} is more elongated than {MAX_ELONGATION}:1")
            return f"{w}:{h}"
    elif exact := _EXACT.match(text):
        w, h = int(exact[1]), int(exact[2])
        if w and h:
            if max(w, h) > MAX_SIDE:
                raise ValueError(f"{value!r} has a side over {MAX_SIDE} pixels")
            return f"{w}x{h}"
    raise ValueError(f"{value!r} is not a size or aspect ratio ({_EXAMPLES})")


def is_ratio(spec: str) -> bool:
    """Whether a canonical spec is an aspect ratio (else an exact size)."""
    return ":" in spec


def resolve_size(spec: str, base: int, latent_factor: int) -> tuple[int, int]:
    """Pixels (width, height) of a canonical spec.

    A ratio w:h becomes about ``base * sqrt(w/h)`` by ``base * sqrt(h/w)``, each side
    rounded to the nearest multiple of `latent_factor` (never below it). An exact
    size is returned as written; checking it against the latent grid is the caller's.
    """
    if is_ratio(spec):
        w, h = (int(part) for part in spec.split(":"))
        scale = math.sqrt(w / h)
        return _snap(base * scale, latent_factor), _snap(base / scale, latent_factor)
    w, h = (int(part) for part in spec.split("x"))
    return w, h


def _snap(value: float, factor: int) -> int:
    return max(factor, round(value / factor) * factor)
