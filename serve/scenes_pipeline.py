"""The scenes model's architecture: a small Stable Diffusion pipeline, native 128x128.

Latents are 4x smaller than the picture (32x32x4 at the native size): the world's
small objects are about 19 pixels wide, too few cells for their shape at SD's usual
8x. The noise schedule reaches zero signal at its last step and the UNet predicts
velocity (v), so a render's background colour comes from the prompt, not from what
the starting noise's mean happened to be.

Its tokenizer is a CLIP tokenizer whose byte-pair merges are learned, in a fixed
order, from the scenes grammar's words (every grammar word is one token; any
other text falls back to smaller pieces), so it is built offline, with no download. The
weights start random from a seed; `scripts/train_scenes.py` trains them.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from tokenizers import pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from core.scenes.grammar import WORDS

__all__ = [
    "LATENT_FACTOR",
    "NATIVE_SIZE",
    "build_scenes_pipeline",
    "scenes_tokenizer",
    "training_scheduler",
]

NATIVE_SIZE = 128
LATENT_FACTOR = 4  # pixels per latent cell (the VAE downsamples twice)
MAX_TOKENS = 32  # the longest prompt of the grammar is 26 tokens with its start and end
_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
_EOW = "</w>"
_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "rescale_betas_zero_snr": True,
    "prediction_type": "v_prediction",
}


def scenes_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer with byte-pair merges learned from the grammar's words."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = _learn_merges(sorted(WORDS))
    vocab: dict[str, int] = {}
    symbols = [*alphabet, *(s + _EOW for s in alphabet), *("".join(m) for m in merges)]
    for token in [*symbols, *_SPECIAL_TOKENS]:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Byte-pair merges until every word is one symbol: the most frequent pair first, ties
    broken by the pair's text, so the same words always give the same merges."""
    spelt = [(*word[:-1], word[-1] + _EOW) for word in words]
    merges: list[tuple[str, str]] = []
    while any(len(symbols) > 1 for symbols in spelt):
        counts = Counter(pair for symbols in spelt for pair in pairwise(symbols))
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        spelt = [_merged(symbols, pair) for symbols in spelt]
    return merges


def _merged(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    index = 0
    while index < len(symbols):
        if symbols[index : index + 2] == pair:
            out.append(pair[0] + pair[1])
            index += 2
        else:
            out.append(symbols[index])
            index += 1
    return tuple(out)


def training_scheduler() -> DDPMScheduler:
    """The noise schedule the UNet is trained under (the pipeline samples with DPM-Solver++)."""
    return DDPMScheduler(**_SCHEDULE)


def build_scenes_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """The untrained pipeline (identical weights for identical seeds), about 22 MB in float32."""
    tokenizer = scenes_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=NATIVE_SIZE,
    )
    unet = UNet2DConditionModel(
        sample_size=NATIVE_SIZE // LATENT_FACTOR,
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=128,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            projection_dim=128,
            bos_token_id=tokenizer.convert_tokens_to_ids(_SPECIAL_TOKENS[0]),
            eos_token_id=tokenizer.convert_tokens_to_ids(_SPECIAL_TOKENS[1]),
            pad_token_id=tokenizer.convert_tokens_to_ids(_SPECIAL_TOKENS[1]),
        )
    )
    scheduler = DPMSolverMultistepScheduler(
        **_SCHEDULE, algorithm_type="dpmsolver++", timestep_spacing="trailing", steps_offset=1
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
