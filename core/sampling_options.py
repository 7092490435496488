"""What a render may choose of its model's sampling: schedulers and LoRA adapters.

A model lists the schedulers a request may pick (`schedulers`) and its LoRA
adapters (`loras`, see `core.lora_options`); `sampling_problems` is the config's
check of both, `chosen_sampling` what a render or pipeline stage chose of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, get_args

from core.lora_options import (
    ChosenLoras,
    LoraAdapter,
    LoraChoice,
    SamplingChoiceError,
    chosen_loras,
    lora_problems,
)

__all__ = [
    "SCHEDULER_NAMES",
    "SamplingChoiceError",
    "SamplingModel",
    "SchedulerName",
    "chosen_sampling",
    "sampling_problems",
]

SchedulerName = Literal["ddim", "euler", "euler_a", "dpm++", "pndm", "lms"]
SCHEDULER_NAMES: tuple[str, ...] = get_args(SchedulerName)
UNET_FAMILIES = ("sd", "sdxl")  # the DDPM-family schedulers above fit their UNets
ADAPTER_FAMILIES = ("sd", "sdxl", "sd3", "flux")


def sampling_problems(
    family: str, loras: Sequence[LoraAdapter], schedulers: Sequence[str]
) -> list[str]:
    """What is wrong with a model's `loras` and `schedulers` for its family."""
    problems = []
    if loras and family not in ADAPTER_FAMILIES:
        problems.append(f"loras apply to diffusion models, not family {family!r}")
    problems += lora_problems(loras)
    if schedulers and family not in UNET_FAMILIES:
        problems.append(
            f"schedulers ({', '.join(schedulers)}) fit families sd and sdxl; family {family!r} "
            "samples by flow matching with its own scheduler"
        )
    return problems


class SamplingModel(Protocol):
    """What a model allows a render to choose (`ModelConfig` has both)."""

    loras: Sequence[LoraAdapter]
    schedulers: Sequence[str]


def chosen_sampling(
    scheduler: str | None, loras: Sequence[LoraChoice] | None, model: SamplingModel
) -> tuple[str | None, ChosenLoras]:
    """The scheduler (None: the model's own) and the (adapter, scale) pairs a render or
    stage uses, checked against `model`'s allow-lists (`SamplingChoiceError` if not)."""
    if scheduler == "default":
        scheduler = None
    if scheduler is not None and scheduler not in model.schedulers:
        names = ", ".join(["default", *model.schedulers])
        raise SamplingChoiceError(
            "scheduler",
            f"scheduler {scheduler!r} is not a scheduler this model allows (allowed: {names})",
        )
    return scheduler, chosen_loras(loras or [], model.loras)  # its LoraChoiceError is one
