"""What crosses Ray in a fused render: the router's requests to a model replica and
the answers. Data only (numpy arrays, no torch).

A fused render makes four kinds of call on the model's replicas:

- `PromptRequest` -> `FusedSetup`: the job's text conditioning, computed once, and
  what the router needs to run the sampler (the scheduler's class and config, the
  latent channels and factor);
- `DenoiseRequest` -> `DenoiseResult`: one denoiser evaluation (with classifier-free
  guidance) of one or more latent crops at one timestep; the conditioning travels by
  reference (an object-store ref put once per job), never by value per call;
- `DecodeRequest` -> `GenerateResult`: one tile of the finished latents through the VAE;
- `EncodeRequest` -> `EncodeResult`: one tile of a base image into latents (img2img).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.schemas import FuseMode

__all__ = [
    "FUSED_FAMILIES",
    "FusedCalls",
    "Conditioning",
    "DecodeRequest",
    "DenoiseRequest",
    "DenoiseResult",
    "EncodeRequest",
    "EncodeResult",
    "Fuse",
    "FusedSetup",
    "PromptRequest",
    "SchedulerSpec",
]

Fuse = FuseMode
"""How overlapping tiles' noise predictions are weighted: 'gaussian' (Mixture of
Diffusers) or 'uniform' (MultiDiffusion's average)."""

FUSED_FAMILIES = ("sd", "sdxl")
"""Model families whose replicas answer the fused calls (a UNet denoiser)."""


@dataclass(frozen=True)
class SchedulerSpec:
    """A diffusers scheduler by class name and config (the model's own)."""

    class_name: str
    config: dict[str, Any]


@dataclass
class PromptRequest:
    """Encode the job's prompt once; tile size in pixels (SDXL's size conditioning)."""

    prompt: str
    negative_prompt: str
    guidance: float
    tile_width: int
    tile_height: int


@dataclass
class Conditioning:
    """A job's text conditioning, in the order the denoiser's batch uses it.

    With classifier-free guidance (guidance > 1) every array holds the negative
    prompt's row then the prompt's; without it, the prompt's row alone.
    """

    key: str  # names it in a replica's cache, so a replica fetches it once per job
    embeds: np.ndarray = field(repr=False)  # (B, tokens, dim) float32
    pooled: np.ndarray | None = field(default=None, repr=False)  # sdxl (B, dim)
    time_ids: np.ndarray | None = field(default=None, repr=False)  # sdxl (B, 6)

    @property
    def cfg(self) -> bool:
        return self.embeds.shape[0] == 2


@dataclass
class FusedSetup:
    """A replica's answer to `PromptRequest`."""

    conditioning: Conditioning
    scheduler: SchedulerSpec
    latent_channels: int
    latent_factor: int
    wire_dtype: str = "float32"  # crops and predictions travel so (float16 for fp16 models)
    replica: str = ""
    started_at: float = 0.0
    compute_s: float = 0.0


@dataclass
class DenoiseRequest:
    """One denoiser evaluation of `latents` (k crops of one size) at `timestep`.

    `latents` are the model input (the scheduler's `scale_model_input` already
    applied on the whole canvas), in the setup's `wire_dtype`: float16 when the model
    runs in float16 (the UNet sees exactly those values, so nothing is lost), else
    float32. `conditioning` is an object-store reference to the
    job's `Conditioning` (the `Conditioning` itself where there is no object store);
    a replica that holds `key` already does not fetch it.
    """

    conditioning: Any = field(repr=False)
    key: str
    latents: np.ndarray = field(repr=False)  # (k, C, h, w) in the setup's wire dtype
    timestep: float
    guidance: float


@dataclass
class DenoiseResult:
    """The guided noise prediction of each crop, in request order."""

    noise: np.ndarray = field(repr=False)  # (k, C, h, w) in the request's dtype
    replica: str = ""
    started_at: float = 0.0
    compute_s: float = 0.0


@dataclass
class DecodeRequest:
    """Decode one crop of the finished latents (unscaled: as the sampler holds them)."""

    latents: np.ndarray = field(repr=False)  # (C, h, w) float32


@dataclass
class EncodeRequest:
    """Encode one tile of the base image (sides multiples of the latent factor)."""

    image: np.ndarray = field(repr=False)  # (h, w, 3) uint8


@dataclass
class EncodeResult:
    """The tile's latents (the distribution's mode), scaled as the sampler holds them."""

    latents: np.ndarray = field(repr=False)  # (C, h / factor, w / factor) float32
    replica: str = ""
    started_at: float = 0.0
    compute_s: float = 0.0


Call = Callable[[Any], Awaitable[Any]]


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class FusedCalls:
    """The model calls of a fused render (each a `ModelCall`), and how the job's
    conditioning is shared (`ray.put` in the router: requests carry the reference)."""

    render: Call  # ordinary renders: the integrated pass of text boxes
    encode_prompt: Call
    denoise: Call
    decode: Call
    encode_image: Call
    share: Callable[[Any], Any] = _same
    replicas: Callable[[], Awaitable[int]] | None = None  # running replicas (None: unknown)
