"""The fields the re-run form offers for one pipeline stage, read from `StageConfig`.

Each stage gets its own: the render settings `StageConfig` declares (their type,
bounds, choices and description come from the schema itself, so the form cannot
drift from it), the stage's current value shown as the placeholder, and only what
applies to it (strength only where the stage starts from an image; a scheduler and
LoRA adapters only where the stage's model allows some). A field left empty keeps
the stage's value; `parse` turns what the form sent into overrides. Adapters are
written `name` or `name:scale`, comma-separated, or `none` for none.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt

from core.errors import RequestError
from core.lora_options import LoraChoice
from core.pipelines import StageConfig

__all__ = ["OFFERED", "StageField", "parse", "stage_fields"]

OFFERED = ("model", "style", "width", "height", "steps", "guidance", "strength", "seed")
OFFERED += ("quiet_zone", "scheduler", "loras")
PER_MODEL = ("scheduler", "loras")  # offered only with the stage model's choices


@dataclass(frozen=True)
class StageField:
    """One input of the form: its kind (int, float, choice, or adapters: `name[:scale]`
    items), bounds or choices, help."""

    name: str
    kind: Literal["int", "float", "choice", "adapters"]
    current: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


def stage_fields(
    stage: StageConfig, routes: Mapping[str, Sequence[str]] | None = None
) -> list[StageField]:
    """The fields of `stage` the form offers (`routes`: the names to pick from by field:
    model and style, and the stage model's schedulers and adapters)."""
    routes = routes or {}
    offered = []
    for name in OFFERED:
        if name == "strength" and stage.kind == "render" and stage.image_input is None:
            continue  # strength needs an image to start from
        choices = tuple(routes.get(name, ()))
        if name in PER_MODEL and not choices:
            continue  # the stage's model allows none
        if name == "loras":
            offered.append(_adapters_field(stage.loras, choices))
        else:
            offered.append(_field(name, getattr(stage, name), choices))
    return offered


def _adapters_field(current: Sequence[LoraChoice] | None, allowed: tuple[str, ...]) -> StageField:
    written = None
    if current is not None:
        written = ", ".join(_written(choice) for choice in current) or "none"
    help_text = StageConfig.model_fields["loras"].description or ""
    help_text += f" Allowed: {', '.join(allowed)}; write name or name:scale, comma-separated."
    return StageField("loras", "adapters", written, help_text, choices=allowed)


def _written(choice: LoraChoice) -> str:
    return choice.name if choice.scale is None else f"{choice.name}:{choice.scale:g}"


def _field(name: str, current: Any, routes: tuple[str, ...]) -> StageField:
    info = StageConfig.model_fields[name]
    help_text = info.description or ""
    kinds = [t for t in _members(info.annotation) if t is not type(None)]
    literal = [t for t in kinds if typing.get_origin(t) is Literal]
    if literal:
        return StageField(name, "choice", current, help_text, choices=typing.get_args(literal[0]))
    if kinds == [str]:
        return StageField(name, "choice", current, help_text, choices=routes)
    low = high = None
    for bound in info.metadata:
        if isinstance(bound, Ge | Gt):
            low = bound.ge if isinstance(bound, Ge) else bound.gt
        elif isinstance(bound, Le | Lt):
            high = bound.le if isinstance(bound, Le) else bound.lt
    kind: Literal["int", "float"] = "int" if kinds == [int] else "float"
    return StageField(name, kind, current, help_text, low, high)


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def parse(fields: Sequence[StageField], form: Mapping[str, str]) -> dict[str, Any]:
    """The overrides the form asks for: its non-empty fields of the stage, typed."""
    overrides: dict[str, Any] = {}
    for field in fields:
        text = form.get(field.name, "").strip()
        if not text:
            continue
        if field.kind == "adapters":
            overrides[field.name] = _adapters(text, field.choices)
            continue
        if field.kind == "choice":
            if field.choices and text not in field.choices:
                raise RequestError(field.name, f"{text[:40]!r} is not one of the choices")
            overrides[field.name] = text
            continue
        try:
            overrides[field.name] = int(text) if field.kind == "int" else float(text)
        except ValueError:
            raise RequestError(field.name, f"{text[:40]!r} is not a number") from None
    return overrides


def _adapters(text: str, allowed: Sequence[str]) -> list[dict[str, Any]]:
    """`name` or `name:scale` items, comma-separated (`none`: no adapters), as `loras`."""
    if text.lower() == "none":
        return []
    chosen: list[dict[str, Any]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, scale = (piece.strip() for piece in item.partition(":"))
        if name not in allowed:
            listed = ", ".join(allowed)
            raise RequestError("loras", f"{name[:40]!r} is not one of the adapters ({listed})")
        if not scale:
            chosen.append({"name": name})
            continue
        try:
            chosen.append({"name": name, "scale": float(scale)})
        except ValueError:
            raise RequestError("loras", f"{scale[:40]!r} is not a number (name:scale)") from None
    return chosen
