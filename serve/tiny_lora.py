"""Tiny random LoRA adapters for the tiny pipelines (tests and examples; no download).

`save_tiny_lora` adds a rank-r adapter to the attention projections of a tiny
family's denoiser (UNet or transformer), fills both of its matrices with seeded
random values (a trained adapter's up-projection is not zero either) and saves
it with the family pipeline's own `save_lora_weights`, as a user's adapter is.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from serve.tiny_pipeline import build_tiny_pipeline

__all__ = ["save_tiny_lora"]

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def save_tiny_lora(out_dir: Path, seed: int, family: str = "sd", rank: int = 4) -> Path:
    """Write a random adapter for the tiny `family` pipelines into `out_dir`; its file."""
    pipe = build_tiny_pipeline(0, family)  # the adapter fits every seed: same shapes
    denoiser_name = "transformer" if family in ("sd3", "flux") else "unet"
    denoiser = getattr(pipe, denoiser_name)
    denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in denoiser.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(denoiser))
    out_dir = Path(out_dir)
    type(pipe).save_lora_weights(
        out_dir, safe_serialization=True, **{f"{denoiser_name}_lora_layers": layers}
    )
    return out_dir / WEIGHT_NAME
