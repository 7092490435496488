"""Write header-only pipelines of SDXL, SD3.5 Large, SD3.5 Medium and Flux.1-dev, and a config.

    python scripts/published_model_headers.py OUT_DIR
    rendercluster models plan --config OUT_DIR/published.yaml

Each component is built on PyTorch's meta device (no memory, no download) from the
published `config.json` values of its repository, and saved as safetensors files
whose headers hold every tensor's real name, dtype and shape; the data region is a
sparse hole (`truncate`), so the files take no disk. Big components are sharded
with an index, as the published repositories are. The parameter counts are checked
against the published ones before anything is written.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKL,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
)

SHARD_BYTES = 5 * 10**9
DTYPE_NAMES = {torch.float16: "F16", torch.bfloat16: "BF16"}
CLIP_L = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    projection_dim=768,
    vocab_size=49408,
    hidden_act="quick_gelu",
)
CLIP_G = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=20,
    num_hidden_layers=32,
    projection_dim=1280,
    vocab_size=49408,
    hidden_act="gelu",
)
T5_XXL = dict(
    d_model=4096,
    d_ff=10240,
    d_kv=64,
    num_heads=64,
    num_layers=24,
    vocab_size=32128,
    feed_forward_proj="gated-gelu",
    is_gated_act=True,
)
VAE = dict(
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    sample_size=1024,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
)
FLOW_VAE = dict(
    VAE,
    latent_channels=16,
    use_quant_conv=False,
    use_post_quant_conv=False,
    shift_factor=0.0609,
    scaling_factor=1.5305,
)
SD35 = dict(
    attention_head_dim=64,
    in_channels=16,
    out_channels=16,
    joint_attention_dim=4096,
    patch_size=2,
    pooled_projection_dim=2048,
    qk_norm="rms_norm",
    sample_size=128,
)
SD3_ENCODERS = {
    "text_encoder": (CLIPTextModelWithProjection, CLIPTextConfig, CLIP_L),
    "text_encoder_2": (CLIPTextModelWithProjection, CLIPTextConfig, CLIP_G),
    "text_encoder_3": (T5EncoderModel, T5Config, T5_XXL),
    "vae": (AutoencoderKL, None, FLOW_VAE),
}
# name -> (pipeline class, dtype, resolution, components, published parameter counts)
MODELS: dict[str, tuple[str, torch.dtype, int, dict[str, tuple], dict[str, float]]] = {
    "sdxl": (
        "StableDiffusionXLPipeline",
        torch.float16,
        1024,
        {
            "unet": (
                UNet2DConditionModel,
                None,
                dict(
                    addition_embed_type="text_time",
                    addition_time_embed_dim=256,
                    attention_head_dim=[5, 10, 20],
                    block_out_channels=[320, 640, 1280],
                    cross_attention_dim=2048,
                    projection_class_embeddings_input_dim=2816,
                    down_block_types=[
                        "DownBlock2D",
                        "CrossAttnDownBlock2D",
                        "CrossAttnDownBlock2D",
                    ],
                    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                    transformer_layers_per_block=[1, 2, 10],
                    use_linear_projection=True,
                    sample_size=128,
                ),
            ),
            "text_encoder": (CLIPTextModel, CLIPTextConfig, CLIP_L),
            "text_encoder_2": (CLIPTextModelWithProjection, CLIPTextConfig, CLIP_G),
            "vae": (AutoencoderKL, None, VAE),
        },
        {"unet": 2.567e9, "text_encoder": 123.06e6, "text_encoder_2": 694.7e6, "vae": 83.65e6},
    ),
    "sd35-large": (
        "StableDiffusion3Pipeline",
        torch.bfloat16,
        1024,
        {
            "transformer": (
                SD3Transformer2DModel,
                None,
                dict(
                    SD35,
                    caption_projection_dim=2432,
                    num_attention_heads=38,
                    num_layers=38,
                    pos_embed_max_size=192,
                ),
            ),
            **SD3_ENCODERS,
        },
        {
            "transformer": 8.1e9,
            "text_encoder": 123.7e6,
            "text_encoder_2": 694.7e6,
            "text_encoder_3": 4.76e9,
            "vae": 83.8e6,
        },
    ),
    "sd35-medium": (
        "StableDiffusion3Pipeline",
        torch.bfloat16,
        1024,
        {
            "transformer": (
                SD3Transformer2DModel,
                None,
                dict(
                    SD35,
                    caption_projection_dim=1536,
                    num_attention_heads=24,
                    num_layers=24,
                    pos_embed_max_size=384,
                    dual_attention_layers=tuple(range(13)),
                ),
            ),
            **SD3_ENCODERS,
        },
        {
            "transformer": 2.47e9,
            "text_encoder": 123.7e6,
            "text_encoder_2": 694.7e6,
            "text_encoder_3": 4.76e9,
            "vae": 83.8e6,
        },
    ),
    "flux-dev": (
        "FluxPipeline",
        torch.bfloat16,
        1024,
        {
            "transformer": (
                FluxTransformer2DModel,
                None,
                dict(
                    attention_head_dim=128,
                    guidance_embeds=True,
                    in_channels=64,
                    joint_attention_dim=4096,
                    num_attention_heads=24,
                    num_layers=19,
                    num_single_layers=38,
                    patch_size=1,
                    pooled_projection_dim=768,
                    axes_dims_rope=(16, 56, 56),
                ),
            ),
            "text_encoder": (CLIPTextModel, CLIPTextConfig, CLIP_L),
            "text_encoder_2": (T5EncoderModel, T5Config, T5_XXL),
            "vae": (AutoencoderKL, None, FLOW_VAE),
        },
        {"transformer": 11.9e9, "text_encoder": 123.06e6, "text_encoder_2": 4.76e9, "vae": 83.8e6},
    ),
}


def build(cls: type, config_cls: type | None, options: dict[str, Any]) -> torch.nn.Module:
    """The module on the meta device, buffers too: shapes without memory."""
    with init_empty_weights(include_buffers=True):
        module = cls(config_cls(**options)) if config_cls else cls(**options)
    if config_cls:
        module.tie_weights()
    return module


def stored_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What `save_pretrained` stores: the state dict (persistent buffers too, such as SD3's
    position table), each tied weight once."""
    seen: set[int] = set()
    tensors = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            tensors[name] = tensor
    return tensors


def write_header(path: Path, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    """A valid safetensors file whose data region is a sparse hole of the right size."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * dtype.itemsize
        header[name] = {
            "dtype": DTYPE_NAMES[dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)


def write_component(
    directory: Path, module: torch.nn.Module, dtype: torch.dtype, stem: str
) -> None:
    """Its tensors in shards of at most SHARD_BYTES, with an index when there are several."""
    directory.mkdir(parents=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in stored_tensors(module).items():
        nbytes = tensor.numel() * dtype.itemsize
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    config = dict(module.config) if hasattr(module.config, "keys") else module.config.to_dict()
    (directory / "config.json").write_text(json.dumps(config, default=list))
    if len(shards) == 1:
        write_header(directory / f"{stem}.safetensors", shards[0], dtype)
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        write_header(directory / file, shard, dtype)
        weight_map.update(dict.fromkeys(shard, file))
    (directory / f"{stem}.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )


def write_model(root: Path, name: str) -> None:
    """One header-only pipeline directory; fails when a count is off its published one."""
    pipeline, dtype, _, components, published = MODELS[name]
    index: dict[str, Any] = {"_class_name": pipeline, "_diffusers_version": "0.42.1"}
    for component, (cls, config_cls, options) in components.items():
        module = build(cls, config_cls, options)
        params = sum(t.numel() for t in stored_tensors(module).values())
        if abs(params / published[component] - 1) > 0.01:
            raise SystemExit(f"{name}/{component}: {params:,} is not ~{published[component]:,.0f}")
        library = "diffusers" if cls.__module__.startswith("diffusers") else "transformers"
        stem = "diffusion_pytorch_model" if library == "diffusers" else "model"
        write_component(root / name / component, module, dtype, stem)
        index[component] = [library, cls.__name__]
    (root / name / "model_index.json").write_text(json.dumps(index, indent=1))


def write_config(root: Path) -> Path:
    """A cluster config naming the four directories at their published defaults."""
    lines = ["models:"]
    for name, (_, _, resolution, components, _) in MODELS.items():
        family = "sdxl" if "unet" in components else "flux" if "flux" in name else "sd3"
        lines += [
            f"  {name}:",
            f"    source: {root.resolve() / name}",
            f"    family: {family}",
            f"    native_resolution: {resolution}",
            "    batching: {max_batch_size: 1}",
        ]
    path = root / "published.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(out: str) -> None:
    root = Path(out)
    for name in MODELS:
        write_model(root, name)
    print(write_config(root))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "published-headers")
