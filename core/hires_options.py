"""Which upscaler a hires render's base goes through: Lanczos or an upscaler model.

`HiresOptions` is a model's `hires` section of the config; the same problem
check serves the config (`models.<name>.hires.upscaler`), pipelines (a hires
stage's `hires_upscaler`) and requests (`hires_upscaler` on a render).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LANCZOS", "HiresOptions", "hires_upscaler_problems", "upscaler_problem"]

LANCZOS = "lanczos"
"""No model: the base is resampled with Pillow's Lanczos filter under each tile."""


class HiresOptions(BaseModel):
    """How a hires render of a diffusion model upscales its base before the tiled refine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upscaler: str = Field(
        LANCZOS,
        min_length=1,
        description=(
            "'lanczos' (Pillow's filter under each tile, no model) or the name of a model of "
            "family 'upscaler': the base is upscaled by it, tiled across its replicas, to at "
            "least the target size (as many passes as that takes), then Lanczos-resized to "
            "exactly the target. A request's hires_upscaler wins."
        ),
    )
    refine_strength: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "img2img strength of this model's per-tile refine (default: "
            "tiling.refine_strength). 0 keeps the upscaled base as it is, with no refine "
            "call: for a model whose refine cannot add detail at the enlarged scale and "
            "would paint the prompt into every tile. A request's strength wins."
        ),
    )

    def strength(self, default: float) -> float:
        """The per-tile refine strength of this model's hires renders."""
        return default if self.refine_strength is None else self.refine_strength


class _Model(Protocol):
    family: str
    hires: HiresOptions


def upscaler_problem(name: str, families: Mapping[str, str]) -> str | None:
    """Why `name` cannot upscale a hires base (None: 'lanczos' or a model of family
    'upscaler'); `families` maps every model's name to its family."""
    if name == LANCZOS:
        return None
    upscalers = ", ".join(sorted(m for m, family in families.items() if family == "upscaler"))
    choices = f"'{LANCZOS}' or an upscaler model ({upscalers or 'none defined'})"
    if name not in families:
        return f"{name!r} is not a model; use {choices}"
    if families[name] != "upscaler":
        return f"model {name!r} is family {families[name]!r}, not an upscaler; use {choices}"
    return None


def hires_upscaler_problems(models: Mapping[str, _Model]) -> list[str]:
    """Every model's `hires.upscaler` that names no upscaler model, with the field's path."""
    families = {name: model.family for name, model in models.items()}
    return [
        f"models.{name}.hires.upscaler: {problem}"
        for name, model in models.items()
        if (problem := upscaler_problem(model.hires.upscaler, families)) is not None
    ]
