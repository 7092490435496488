"""LoRA adapters of a diffusion model, and which of them a render uses.

A model's `loras` are loaded once, when a replica starts. An adapter with `fuse:
true` is merged into the weights there and is always on (no cost per render); the
others form the model's allow-list: a request (or its style) names the ones it
wants and their scales, and the replica switches them on for that render only.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChosenLoras",
    "LoraAdapter",
    "LoraChoice",
    "LoraChoiceError",
    "SamplingChoiceError",
    "chosen_loras",
    "lora_problems",
]

LORA_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
MAX_LORA_SCALE = 4.0

ChosenLoras = tuple[tuple[str, float], ...]  # (adapter name, scale), in request order


class LoraAdapter(BaseModel):
    """One configured LoRA adapter of a model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        ..., pattern=LORA_NAME_PATTERN, description="What requests and styles call it."
    )
    source: str = Field(
        ...,
        min_length=1,
        description="A local .safetensors file or directory in diffusers' LoRA layout, "
        "'hf:org/name@revision' (pinned), or 's3://bucket/prefix' (copied once to node disk); "
        "a local or s3:// source may pin its content with '@sha256:<hex>'.",
    )
    scale: float = Field(
        1.0,
        ge=-MAX_LORA_SCALE,
        le=MAX_LORA_SCALE,
        description="Strength when fused, and when a request names it without a scale.",
    )
    fuse: bool = Field(
        False,
        description="Merge it into the weights at load: always on, no per-render cost, "
        "and not in the per-request allow-list.",
    )


class LoraChoice(BaseModel):
    """A render's use of one allowed adapter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., description="An adapter of the model's `loras` (not fused).")
    scale: float | None = Field(
        None,
        ge=-MAX_LORA_SCALE,
        le=MAX_LORA_SCALE,
        description="Its strength (default: the adapter's configured scale).",
    )


class SamplingChoiceError(ValueError):
    """A scheduler or adapter the model does not allow; `field` names it (`scheduler`,
    `loras[i].name`), and so does the message."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class LoraChoiceError(SamplingChoiceError):
    """A render named an adapter its model does not allow; `field` says where."""


def lora_problems(adapters: Sequence[LoraAdapter]) -> list[str]:
    """What is wrong with a model's `loras` list (empty when nothing)."""
    names = [adapter.name for adapter in adapters]
    twice = sorted({name for name in names if names.count(name) > 1})
    return [f"loras: adapter name {name!r} is used twice" for name in twice]


def chosen_loras(
    choices: Sequence[LoraChoice], adapters: Sequence[LoraAdapter], field: str = "loras"
) -> ChosenLoras:
    """The (name, scale) pairs a render switches on, checked against the allow-list (the
    model's adapters that are not fused); raises `LoraChoiceError` naming the entry."""
    allowed = {adapter.name: adapter for adapter in adapters if not adapter.fuse}
    chosen: list[tuple[str, float]] = []
    for index, choice in enumerate(choices):
        adapter = allowed.get(choice.name)
        if adapter is None:
            names = ", ".join(sorted(allowed)) or "none"
            raise LoraChoiceError(
                f"{field}[{index}].name",
                f"{field}[{index}].name {choice.name!r} is not an adapter this model allows "
                f"per render (allowed: {names})",
            )
        if any(name == choice.name for name, _ in chosen):
            raise LoraChoiceError(
                f"{field}[{index}].name", f"{field}[{index}].name {choice.name!r} is named twice"
            )
        chosen.append((choice.name, adapter.scale if choice.scale is None else choice.scale))
    return tuple(chosen)
