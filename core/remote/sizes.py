"""Exact output sizes from providers that only offer fixed sizes or aspect ratios.

A render asks for W x H. The adapter asks the provider for the closest size it
offers (`closest_option`: nearest aspect ratio first, then the smallest tier that
covers W x H without upscaling, else the largest). What comes back is made exactly
W x H (`fit_plan` / `fit`):

- txt2img: resized (Lanczos) to cover W x H, keeping its aspect, then centre-cropped;
- img2img / inpaint: the input was stretched to the provider's size before sending
  (`stretch`), so the answer is stretched back: the unmasked scene stays in place.

The plan is recorded: what was asked, what was requested, what came back and what
was done to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from core.remote.wire import SizeOption

__all__ = ["FitPlan", "closest_option", "fit", "fit_plan", "ratio_options", "stretch"]

_SAME_ASPECT = 1e-3  # options whose log-aspects differ less than this are tiers of one ratio


def closest_option(options: Sequence[SizeOption], width: int, height: int) -> SizeOption:
    """The offered size closest to `width` x `height` (see the module)."""
    if not options:
        raise ValueError("a provider must offer at least one size")
    target = math.log(width / height)

    def distance(option: SizeOption) -> float:
        return abs(math.log(option.aspect) - target)

    best = min(distance(option) for option in options)
    nearest = [option for option in options if distance(option) - best < _SAME_ASPECT]
    covering = [o for o in nearest if o.width >= width and o.height >= height]
    if covering:
        return min(covering, key=lambda o: o.width * o.height)
    return max(nearest, key=lambda o: o.width * o.height)


def ratio_options(
    ratios: Sequence[str], area: int, separator: str = ":", multiple: int = 64
) -> list[SizeOption]:
    """Aspect-ratio labels ('16:9') with the nominal size of about `area` pixels each.

    For providers that take a ratio and return about one megapixel; the exact size
    they return does not matter to the fit, which works on what came back.
    """
    options = []
    for label in ratios:
        a, b = (int(part) for part in label.split(separator))
        width = round(math.sqrt(area * a / b) / multiple) * multiple
        height = round(math.sqrt(area * b / a) / multiple) * multiple
        options.append(SizeOption(label, width, height, ratio=a / b))
    return options


@dataclass(frozen=True)
class FitPlan:
    """How an answer of `returned` size becomes exactly `asked` (see the module)."""

    asked: tuple[int, int]
    requested: str
    returned: tuple[int, int]
    resized: tuple[int, int]
    crop: tuple[int, int, int, int]  # left, top, right, bottom in the resized image
    action: Literal["none", "resize", "resize+crop", "stretch"]

    def record(self) -> dict[str, Any]:
        """The plan as a run record keeps it."""
        return {
            "asked": list(self.asked),
            "requested": self.requested,
            "returned": list(self.returned),
            "resized": list(self.resized),
            "crop": list(self.crop),
            "action": self.action,
        }


def fit_plan(
    asked: tuple[int, int], returned: tuple[int, int], requested: str, keep_aspect: bool = True
) -> FitPlan:
    """The resize (and centre crop) from `returned` to exactly `asked` (width, height)."""
    width, height = asked
    if returned == asked:
        return FitPlan(asked, requested, returned, asked, (0, 0, width, height), "none")
    if not keep_aspect:
        return FitPlan(asked, requested, returned, asked, (0, 0, width, height), "stretch")
    scale = max(width / returned[0], height / returned[1])
    resized = (
        max(width, round(returned[0] * scale)),
        max(height, round(returned[1] * scale)),
    )
    left, top = (resized[0] - width) // 2, (resized[1] - height) // 2
    action = "resize" if resized == asked else "resize+crop"
    return FitPlan(
        asked, requested, returned, resized, (left, top, left + width, top + height), action
    )


def fit(image: np.ndarray, plan: FitPlan) -> np.ndarray:
    """`image` (of the plan's returned size) made exactly the plan's asked size."""
    if plan.action == "none":
        return image
    resized = Image.fromarray(image).resize(plan.resized, Image.Resampling.LANCZOS)
    if plan.resized != plan.asked:
        resized = resized.crop(plan.crop)
    return np.asarray(resized)


def stretch(array: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """`array` resized to `size` (width, height) without keeping its aspect (masks: nearest)."""
    if (array.shape[1], array.shape[0]) == size:
        return array
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(array).resize(size, resample))
