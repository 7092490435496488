"""Tiny randomly initialised diffusion pipelines, built from configs, by family.

They stand in for real weights wherever none can be downloaded: on a CPU one
renders 256x256 in well under a second. `sd` is Stable Diffusion 1.x's layout;
`sdxl` has SDXL's own pieces (two text encoders, the second with a projection,
and the UNet's size conditioning, `addition_embed_type="text_time"`); `sd3` has
SD3's MMDiT transformer, three text encoders (two CLIP with projections and a
T5) and flow-matching scheduler, over a 16-channel VAE; `flux` has Flux's
transformer with its guidance embedding, a CLIP and a T5 encoder, and the
dynamically shifted flow-matching scheduler. The tokenizers are built offline:
CLIP's over a byte alphabet, T5's a unigram over single characters. The same
seed builds the same weights in every process; a pipeline is saved once
(atomically) to a cache directory, and every later load goes through the
ordinary local-directory path.
"""

from __future__ import annotations

import os
import shutil
import string
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PNDMScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from tokenizers import pre_tokenizers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

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
    """Build the tiny pipeline of `family` (sd, sdxl, sd3 or flux); identical weights for
    identical seeds."""
    builders = {"sd": _tiny_sd, "sdxl": _tiny_sdxl, "sd3": _tiny_sd3, "flux": _tiny_flux}
    if family not in builders:
        raise ValueError(f"tiny models are built for families {', '.join(builders)}")
    return builders[family](seed)


def _vae(latent_channels: int = 4, **flow_vae: float | bool) -> AutoencoderKL:
    """SD's VAE layout (SD3 and Flux: see `_flow_vae`)."""
    return AutoencoderKL(
        block_out_channels=(32, 32, 64, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels,
        norm_num_groups=16,
        sample_size=256,
        **flow_vae,
    )


def _flow_vae(shift_factor: float, scaling_factor: float) -> AutoencoderKL:
    """SD3's and Flux's VAE: 16 latent channels, a shift and no quant convs."""
    return _vae(
        16,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=shift_factor,
        scaling_factor=scaling_factor,
    )


def _unet(**family: object) -> UNet2DConditionModel:
    """The tiny UNet of SD 1.x and SDXL: two blocks, the second with cross-attention;
    `family` adds the family's own options."""
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=16,
        **family,
    )


def _t5_tokenizer() -> T5TokenizerFast:
    """A unigram T5 tokenizer over single characters (T5's special tokens first)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(char, -3.0) for char in string.ascii_lowercase + string.digits + string.punctuation]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=77)


def _t5(tokenizer: T5TokenizerFast) -> T5EncoderModel:
    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )


def _tiny_sd3(seed: int) -> StableDiffusion3Pipeline:
    """SD3's layout: the two CLIPs' hidden states (padded) and T5's condition the joint
    attention; their pooled projections (32 + 32) the transformer's pooled input."""
    clip, t5_tokenizer = _tokenizer(), _t5_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
    )
    vae = _flow_vae(shift_factor=0.0609, scaling_factor=1.5035)
    text_config = _text_config(clip)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=CLIPTextModelWithProjection(text_config),
        tokenizer=clip,
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer_2=clip,
        text_encoder_3=_t5(t5_tokenizer),
        tokenizer_3=t5_tokenizer,
    )


def _tiny_flux(seed: int) -> FluxPipeline:
    """Flux's layout: latents packed 2x2 (64 channels in), T5's hidden states and CLIP's
    pooled output condition the transformer, which embeds the guidance scale."""
    clip, t5_tokenizer = _tokenizer(), _t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    vae = _flow_vae(shift_factor=0.1159, scaling_factor=0.3611)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return FluxPipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(clip)),
        tokenizer=clip,
        text_encoder_2=_t5(t5_tokenizer),
        tokenizer_2=t5_tokenizer,
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
    unet = _unet(
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 size ids x 8 + pooled 32
        cross_attention_dim=64,
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
    unet = _unet(cross_attention_dim=32)
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
