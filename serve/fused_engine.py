"""The replica's side of a fused render: prompt, denoise, decode, encode (no Serve, no Ray).

`FusedEngine` works on the components of the model's loaded diffusers pipeline
(text encoders, UNet, VAE), doing what the pipeline's own loop does for one step of
one window, so that a fused render is the pipeline's arithmetic spread over
replicas:

- `encode_prompt`: the pipeline's `encode_prompt` (negative row first with
  classifier-free guidance, as the pipelines concatenate them), plus SDXL's pooled
  embeddings and size conditioning (each tile conditioned as a native render of its
  size: original = target = tile, crop at 0, 0);
- `denoise`: crops laid out as `StableDiffusionPanoramaPipeline` batches its views
  (each crop repeated for the negative and the positive row), the UNet, guidance;
- `decode` / `encode_image`: the VAE on one tile (the latent distribution's mode when
  encoding, so encoding draws no noise).

The conditioning of a job arrives once per replica (`install`) and is kept on the
device, least recently used first out.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from core.errors import RequestError, TileOutOfMemory
from core.imaging import unit_floats_to_uint8
from core.largeformat.fused_schemas import (
    FUSED_FAMILIES,
    Conditioning,
    DecodeRequest,
    DenoiseRequest,
    DenoiseResult,
    EncodeRequest,
    EncodeResult,
    FusedSetup,
    PromptRequest,
    SchedulerSpec,
)
from core.schemas import GenerateResult
from serve.loader import LoadedModel

__all__ = ["FusedEngine"]

Identity = Callable[[], tuple[str, list[str]]]


@dataclass
class _Installed:
    """A job's conditioning on the device, in the UNet's dtype."""

    embeds: torch.Tensor
    added: dict[str, torch.Tensor] | None


class FusedEngine:
    """Fused-render calls on one loaded model of family sd or sdxl."""

    def __init__(
        self,
        model: LoadedModel,
        family: str,
        identity: Identity = lambda: ("local", []),
        max_pixels_per_call: int | None = None,
        cache_size: int = 4,
    ):
        self.pipe = model.txt2img
        self.name = model.name
        self.family = family
        self.device = model.device
        self.dtype = model.dtype
        self.max_pixels_per_call = max_pixels_per_call
        self.installs = 0  # conditionings received (a job's is received once per replica)
        self._identity = identity
        self._cache: OrderedDict[str, _Installed] = OrderedDict()
        self._cache_size = cache_size
        self._decoder = None

    @property
    def factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    def _check_family(self) -> None:
        if self.family not in FUSED_FAMILIES or getattr(self.pipe, "unet", None) is None:
            raise RequestError(
                "mode",
                f"fused renders need a model of family {' or '.join(FUSED_FAMILIES)}, "
                f"this one is {self.family!r}",
            )

    def _check_pixels(self, what: str, pixels: int) -> None:
        if self.max_pixels_per_call and pixels > self.max_pixels_per_call:
            raise TileOutOfMemory(
                what, f"{pixels} pixels, over the replica's limit of {self.max_pixels_per_call}"
            )

    # -- the job's conditioning ----------------------------------------------------

    def encode_prompt(self, request: PromptRequest) -> FusedSetup:
        """Encode the prompt (and negative prompt with guidance > 1) once for a job."""
        self._check_family()
        started_at, started = time.time(), time.perf_counter()
        cfg = request.guidance > 1.0
        with torch.inference_mode():
            if self.family == "sdxl":
                embeds, pooled, time_ids = self._sdxl_prompt(request, cfg)
            else:
                positive, negative = self.pipe.encode_prompt(
                    request.prompt, self.device, 1, cfg, request.negative_prompt
                )
                embeds = torch.cat([negative, positive]) if cfg else positive
                pooled = time_ids = None
        inputs = (self.family, request.prompt, request.negative_prompt, cfg)
        size = (request.tile_width, request.tile_height)
        key = hashlib.sha256(repr((inputs, size)).encode()).hexdigest()[:24]
        conditioning = Conditioning(key, _array(embeds), _array(pooled), _array(time_ids))
        scheduler = self.pipe.scheduler
        return FusedSetup(
            conditioning=conditioning,
            scheduler=SchedulerSpec(type(scheduler).__name__, dict(scheduler.config)),
            latent_channels=int(self.pipe.unet.config.in_channels),
            latent_factor=self.factor,
            wire_dtype="float16" if self.dtype == torch.float16 else "float32",
            replica=self._identity()[0],
            started_at=started_at,
            compute_s=time.perf_counter() - started,
        )

    def _sdxl_prompt(
        self, request: PromptRequest, cfg: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        positive, negative, pooled, negative_pooled = self.pipe.encode_prompt(
            prompt=request.prompt,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=cfg,
            negative_prompt=request.negative_prompt or None,  # None: SDXL's zeroed negative
        )
        size = (request.tile_height, request.tile_width)
        time_ids = torch.tensor([[*size, 0, 0, *size]], dtype=torch.float32)
        if not cfg:
            return positive, pooled, time_ids
        return (
            torch.cat([negative, positive]),
            torch.cat([negative_pooled, pooled]),
            time_ids.repeat(2, 1),
        )

    def installed(self, key: str) -> _Installed | None:
        """The conditioning `key` if this replica holds it (marked as just used)."""
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
        return found

    def install(self, conditioning: Conditioning) -> _Installed:
        """Keep a job's conditioning on the device (evicting the least recently used)."""
        self.installs += 1

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device, self.dtype)

        added = None
        if conditioning.pooled is not None:
            added = {"text_embeds": tensor(conditioning.pooled)}
            added["time_ids"] = tensor(conditioning.time_ids)
        installed = _Installed(tensor(conditioning.embeds), added)
        self._cache[conditioning.key] = installed
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return installed

    # -- one step of k crops -------------------------------------------------------

    def denoise(self, request: DenoiseRequest, conditioning: _Installed) -> DenoiseResult:
        """The guided noise prediction of each crop of `request.latents` (k, C, h, w), in
        the crops' dtype (float16 crops come from, and go back to, a float16 model)."""
        self._check_family()
        k, _, h, w = request.latents.shape
        self._check_pixels(f"{k}x{w * self.factor}x{h * self.factor}", k * h * w * self.factor**2)
        started_at, started = time.time(), time.perf_counter()
        cfg = conditioning.embeds.shape[0] == 2
        with torch.inference_mode(), _out_of_memory(f"denoise {w}x{h} latents"):
            latents = torch.from_numpy(request.latents).to(self.device, self.dtype)
            model_input = latents.repeat_interleave(2, dim=0) if cfg else latents
            added = None
            if conditioning.added is not None:
                added = {name: value.repeat(k, 1) for name, value in conditioning.added.items()}
            noise = self.pipe.unet(
                model_input,
                torch.tensor(request.timestep, dtype=torch.float32, device=self.device),
                encoder_hidden_states=conditioning.embeds.repeat(k, 1, 1),
                added_cond_kwargs=added,
                return_dict=False,
            )[0]
            if cfg:
                uncond, text = noise[::2], noise[1::2]
                noise = uncond + request.guidance * (text - uncond)
            wire = torch.float16 if request.latents.dtype == np.float16 else torch.float32
            result = noise.to(wire).cpu().numpy()
        replica = self._identity()[0]
        return DenoiseResult(result, replica, started_at, time.perf_counter() - started)

    # -- the VAE on one tile ---------------------------------------------------------

    def decode(self, request: DecodeRequest) -> GenerateResult:
        """Pixels (h * factor, w * factor, 3) uint8 of a (C, h, w) crop of the latents."""
        self._check_family()
        _, h, w = request.latents.shape
        self._check_pixels(f"decode {w}x{h}", h * w * self.factor**2)
        started_at, started = time.time(), time.perf_counter()
        vae = self._vae_for_decode()
        config = vae.config
        with torch.inference_mode(), _out_of_memory(f"decode {w}x{h} latents"):
            latents = torch.from_numpy(request.latents)[None].to(self.device, vae.dtype)
            latents = latents / config.scaling_factor
            if getattr(config, "shift_factor", None):
                latents = latents + config.shift_factor
            image = vae.decode(latents, return_dict=False)[0]
            image = self.pipe.image_processor.postprocess(image, output_type="np")
        pixels = unit_floats_to_uint8(image[0], self.name, str(vae.dtype).removeprefix("torch."))
        replica, gpu_ids = self._identity()
        elapsed = time.perf_counter() - started
        return GenerateResult(pixels, 0, elapsed, 1, replica, gpu_ids, started_at)

    def _vae_for_decode(self) -> torch.nn.Module:
        """The VAE; a float32 copy where half precision overflows (SDXL's `force_upcast`)."""
        vae = self.pipe.vae
        if vae.dtype != torch.float16 or not getattr(vae.config, "force_upcast", False):
            return vae
        if self._decoder is None:
            self._decoder = copy.deepcopy(vae).to(torch.float32)
        return self._decoder

    def encode_image(self, request: EncodeRequest) -> EncodeResult:
        """Latents (C, h / factor, w / factor) of an image tile, scaled as the sampler's."""
        self._check_family()
        h, w = request.image.shape[:2]
        self._check_pixels(f"encode {w}x{h}", h * w)
        started_at, started = time.time(), time.perf_counter()
        vae = self._vae_for_decode()
        config = vae.config
        with torch.inference_mode(), _out_of_memory(f"encode {w}x{h} pixels"):
            pixels = self.pipe.image_processor.preprocess(Image.fromarray(request.image))
            encoded = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist.mode()
            if getattr(config, "shift_factor", None):
                encoded = encoded - config.shift_factor
            latents = (encoded * config.scaling_factor)[0].float().cpu().numpy()
        replica = self._identity()[0]
        return EncodeResult(latents, replica, started_at, time.perf_counter() - started)


def _array(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.float().cpu().numpy()


class _out_of_memory:  # noqa: N801 - used as a context manager
    """Turns the device running out of memory into `TileOutOfMemory`."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, _tb) -> bool:
        if kind is not None and issubclass(kind, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
            raise TileOutOfMemory(self.what, str(exc)) from None
        return False
