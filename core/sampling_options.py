"""What a render may choose of its model's sampling: schedulers and LoRA adapters.

A model lists the schedulers a request may pick (`schedulers`) and its LoRA
adapters (`loras`, see `core.lora_options`); `sampling_problems` is the config's
check of both, `chosen_scheduler` a request's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from core.lora_options import LoraAdapter, lora_problems

__all__ = ["SCHEDULER_NAMES", "SchedulerName", "chosen_scheduler", "sampling_problems"]

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


def chosen_scheduler(requested: str | None, allowed: Sequence[str]) -> str | None:
    """The scheduler a render uses (None: the model's own), or ValueError naming the
    model's allow-list."""
    if requested is None or requested == "default":
        return None
    if requested not in allowed:
        names = ", ".join(["default", *allowed])
        raise ValueError(f"{requested!r} is not a scheduler this model allows (allowed: {names})")
    return requested
