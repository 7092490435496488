"""Tiny randomly initialised diffusion pipelines, built from configs, by family.

They stand in for real weights wherever none can be downloaded: on a CPU one
renders 256x256 in well under a second. `sd` is Stable Diffusion 1.x's layout;
`sdxl` has SDXL's own pieces (two text encoders, the second with a projection,
and the UNet's size conditioning, `addition_embed_type="text_time"`). The same
seed builds the same weights in every process; a pipeline is saved once
(atomically) to a cache directory, and every later load goes through the
ordinary local-directory path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from tokenizers import pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from core.config import TINY_FAMILIES

TINY_FORMAT_VERSION = 1
_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def _tokenizer() -> CLIPTokenizer:
    """Byte-level CLIP tokenizer over a 256-symbol alphabet (no merges, no download)."""
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(symbols)}
    for token in _SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_pipeline(seed: int = 0, family: str = "sd") -> DiffusionPipeline:
    """Build the tiny pipeline of `family` (one of `TINY_FAMILIES`); identical weights for
    identical seeds."""
    if family == "sdxl":
        return _tiny_sdxl(seed)
    if family != "sd":
        raise ValueError(f"tiny models are built for families {', '.join(TINY_FAMILIES)}")
    return _tiny_sd(seed)


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(32, 32, 64, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=256,
    )


def _text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids(_SPECIAL_TOKENS[0]),
        eos_token_id=tokenizer.convert_tokens_to_ids(_SPECIAL_TOKENS[1]),
        pad_token_id=tokenizer.convert_tokens_to_ids(_SPECIAL_TOKENS[1]),
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        projection_dim=32,
    )


def _tiny_sdxl(seed: int) -> StableDiffusionXLPipeline:
    """SDXL's layout: both encoders' hidden states (32 + 32) condition the UNet, and the
    second's pooled projection plus six size ids (8 each) its added time embedding."""
    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 size ids x 8 + pooled 32
        cross_attention_dim=64,
        norm_num_groups=16,
    )
    vae = _vae()
    text_config = _text_config(tokenizer)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
    )


def _tiny_sd(seed: int) -> StableDiffusionPipeline:
    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=16,
    )
    vae = _vae()
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_pipeline_dir(cache_dir: Path, seed: int, family: str = "sd") -> Path:
    """Build the tiny pipeline of `family` into `cache_dir` once and return its directory.

    Concurrent builders (several replicas starting together) are safe: each
    saves into a private temporary directory and the first rename wins.
    """
    kind = "tiny" if family == "sd" else f"tiny-{family}"  # sd keeps its cache's name
    target = Path(cache_dir).expanduser() / f"{kind}-v{TINY_FORMAT_VERSION}-seed{seed}"
    if (target / "model_index.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build_tiny_pipeline(seed, family).save_pretrained(staging, safe_serialization=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
