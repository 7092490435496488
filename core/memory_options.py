"""A diffusion model's GPU memory options, and what a replica does with them on a device.

`memory_actions` is the one decision: which diffusers calls a replica makes for a
model's `memory:` options on the device it loads on (the loader runs them). Offload
moves weights between host and GPU memory, so on a CPU it means nothing and is skipped.
A replica that books several GPUs (`gpus_per_replica` 2 or more) places its pipeline's
components across them with diffusers' `device_map="balanced"`: whole components
(denoiser, text encoders, VAE) go to the GPU with the most free memory, in turn.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AUTO_GPU_DTYPES",
    "MemoryOptions",
    "gpu_auto_dtype",
    "memory_actions",
    "memory_problems",
    "placement_problems",
]

# `dtype: auto` on a GPU, by family: Flux and SD3 overflow float16 (NaN pixels), so they
# run in bfloat16 as their authors ship them; SD and SDXL run in float16 (SDXL's VAE is
# upcast where it overflows, see `force_upcast`).
AUTO_GPU_DTYPES = {"flux": "bfloat16", "sd3": "bfloat16"}
# Families whose denoiser slices attention (diffusers' UNet; SD3's and Flux's transformers
# have no `set_attention_slice`, so the option would do nothing there).
SLICED_ATTENTION = ("sd", "sdxl")

Action = Literal[
    "drop_t5",
    "to_device",
    "device_map_balanced",
    "model_cpu_offload",
    "sequential_cpu_offload",
    "vae_tiling",
    "vae_slicing",
    "attention_slicing",
]


def gpu_auto_dtype(family: str) -> str:
    """The dtype `auto` means for `family` on a GPU with bfloat16."""
    return AUTO_GPU_DTYPES.get(family, "float16")


class MemoryOptions(BaseModel):
    """How a diffusion model's replica saves GPU memory (each costs some speed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offload: Literal["none", "model", "sequential"] = Field(
        "none",
        description="Keep weights in host memory and move them to the GPU when used: 'model' "
        "moves one whole component at a time (the largest must fit), 'sequential' one layer "
        "at a time (slowest, least memory); ignored on a CPU.",
    )
    vae_tiling: bool = Field(
        False,
        description="Decode and encode images larger than the VAE's sample size in tiles.",
    )
    vae_slicing: bool = Field(
        False, description="Decode a batch one image at a time instead of all at once."
    )
    attention_slicing: bool = Field(
        False,
        description="Families sd and sdxl: compute attention in two slices (saves memory "
        "mainly without PyTorch's SDPA, at some speed).",
    )
    drop_t5: bool = Field(
        False,
        description="Family sd3 only: load without the T5 text encoder (text_encoder_3), "
        "saving its ~9.5 GB at 16 bits; prompts lose some adherence, mostly on text.",
    )

    @property
    def is_default(self) -> bool:
        return self == MemoryOptions()


def memory_problems(family: str, options: MemoryOptions) -> list[str]:
    """What is wrong with `options` for a model of `family` (empty when nothing)."""
    if options.is_default:
        return []
    if family in ("upscaler", "remote"):
        changed = ", ".join(sorted(options.model_dump(exclude_defaults=True)))
        return [f"memory ({changed}) applies to diffusion models, not family {family!r}"]
    problems = []
    if options.drop_t5 and family != "sd3":
        problems.append(
            f"memory.drop_t5 needs family 'sd3' (the one with an optional T5), not {family!r}"
        )
    if options.attention_slicing and family not in SLICED_ATTENTION:
        problems.append(
            f"memory.attention_slicing does nothing for family {family!r}: "
            "its transformer has no sliced attention (only sd and sdxl UNets do)"
        )
    return problems


def placement_problems(options: MemoryOptions, gpus_per_replica: float) -> list[str]:
    """What is wrong with placing a replica on `gpus_per_replica` GPUs with `options`."""
    if gpus_per_replica <= 1:
        return []
    problems = []
    if gpus_per_replica != int(gpus_per_replica):
        problems.append(
            f"gpus_per_replica ({gpus_per_replica:g}) above 1 must be a whole number: "
            "a replica places its components across whole GPUs"
        )
    if options.offload != "none":
        problems.append(
            f"memory.offload ({options.offload}) keeps weights in host memory on one GPU; "
            f"a replica with gpus_per_replica {gpus_per_replica:g} places its components "
            "across its GPUs instead: set offload 'none' or gpus_per_replica 1"
        )
    return problems


def memory_actions(
    options: MemoryOptions, family: str, device: str, gpus_per_replica: float = 1.0
) -> list[Action]:
    """The loader's steps, in order: what to leave out when loading, how to place the
    weights (on the device, across the replica's GPUs, or offloaded on CUDA), then the
    VAE and attention settings."""
    actions: list[Action] = []
    if options.drop_t5 and family == "sd3":  # validation refuses it elsewhere
        actions.append("drop_t5")
    on_gpu = device.startswith("cuda")
    if on_gpu and gpus_per_replica >= 2:
        actions.append("device_map_balanced")
    elif options.offload != "none" and on_gpu:
        actions.append(
            "model_cpu_offload" if options.offload == "model" else "sequential_cpu_offload"
        )
    else:
        actions.append("to_device")
    if options.vae_tiling:
        actions.append("vae_tiling")
    if options.vae_slicing:
        actions.append("vae_slicing")
    if options.attention_slicing and family in SLICED_ATTENTION:
        actions.append("attention_slicing")
    return actions
