"""`ModelServer`: the Serve deployment that hosts one model on GPU replicas.

One deployment per configured model (named by `core.config.deployment_name`),
each with its own autoscaling, queue limits and dynamic batching. The torch
work runs in a worker thread so that health checks and batching stay
responsive while a batch renders.

Fused renders (sd and sdxl families) call `encode_prompt`, `denoise`, `decode` and
`encode_image` (`serve.fused_engine.FusedEngine`), one at a time per replica and
never batched across requests, so that their bytes never depend on batching.

A replica renders one small image in its constructor (`serve.warmup`), so Serve
routes nothing to it before its first, slow render is done.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import ray
import torch
from ray import serve

from core.config import ModelConfig
from core.largeformat.fused_schemas import (
    DecodeRequest,
    DenoiseRequest,
    DenoiseResult,
    EncodeRequest,
    EncodeResult,
    FusedSetup,
    PromptRequest,
)
from core.schemas import GenerateRequest, GenerateResult
from serve.engine import RenderEngine
from serve.fused_engine import FusedEngine
from serve.loader import load_model
from serve.lora_loading import activate
from serve.warmup import warm_up_renderer


def _replica_identity() -> tuple[str, list[str]]:
    context = serve.get_replica_context()
    gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
    return context.replica_id.unique_id, gpu_ids


@serve.deployment
class ModelServer:
    """Hosts one pinned model; renders batches of `GenerateRequest`s."""

    def __init__(self, model_name: str, model: dict[str, Any], cache_dir: str):
        self.model_name = model_name
        self.config = ModelConfig.model_validate(model)
        if not torch.cuda.is_available():
            torch.set_num_threads(self.config.torch_threads)
        loaded = load_model(self.config, Path(cache_dir), model_name)
        batching = self.config.batching
        self.engine = RenderEngine(
            loaded,
            max_batch_size=batching.max_batch_size,
            fixed_batch_shape=batching.fixed_batch_shape,
            identity=_replica_identity,
            max_pixels_per_call=self.config.max_pixels_per_call,
        )
        self.fused = FusedEngine(
            loaded,
            self.config.family,
            identity=_replica_identity,
            max_pixels_per_call=self.config.max_pixels_per_call,
        )
        self._fused_lock = asyncio.Lock()
        self._render_batch.set_max_batch_size(batching.max_batch_size)
        self._render_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
        self.warmup = warm_up_renderer(self.engine.render, self.config)
        self._healthy = True

    async def render(self, request: GenerateRequest) -> GenerateResult:
        """Render one image (batched with concurrent requests of the same shape)."""
        return await self._render_batch(request)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def _render_batch(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        try:
            return await asyncio.to_thread(self.engine.render, requests)
        except RuntimeError as exc:
            if "CUDA error" in str(exc):  # the device is unusable: let Serve replace us
                self._healthy = False
            raise

    async def encode_prompt(self, request: PromptRequest) -> FusedSetup:
        """A fused render's conditioning and sampler settings, computed once per job."""
        return await self._fused(self.fused.encode_prompt, request)

    async def denoise(self, request: DenoiseRequest) -> DenoiseResult:
        """One guided denoiser evaluation of latent crops (a fused render's step).

        The job's conditioning is fetched from the object store on this replica's first
        call of the job and kept on the device.
        """
        installed = self.fused.installed(request.key)
        if installed is None:
            conditioning = request.conditioning
            if isinstance(conditioning, ray.ObjectRef):
                conditioning = await conditioning
            installed = self.fused.install(conditioning)
        return await self._fused(self.fused.denoise, request, installed)

    async def decode(self, request: DecodeRequest) -> GenerateResult:
        """Decode a tile of a fused render's finished latents into pixels."""
        return await self._fused(self.fused.decode, request)

    async def encode_image(self, request: EncodeRequest) -> EncodeResult:
        """Encode a tile of a fused img2img render's base image into latents."""
        return await self._fused(self.fused.encode_image, request)

    async def _fused(self, method: Any, *args: Any) -> Any:
        async with self._fused_lock:  # one model evaluation at a time on this replica
            try:
                return await asyncio.to_thread(self._with_adapters_off, method, *args)
            except RuntimeError as exc:
                if "CUDA error" in str(exc):
                    self._healthy = False
                raise

    def _with_adapters_off(self, method: Any, *args: Any) -> Any:
        """Run a fused call with no per-render LoRA switched on (fused renders take none),
        never while a batch call holds the model's modules."""
        model = self.engine.model
        with model.lock:
            if model.loras:
                activate(model.txt2img, ())
            return method(*args)

    async def info(self) -> dict[str, Any]:
        """Where this replica runs (replica id, logical GPUs, device, dtype, pid) and what it
        loaded (pipelines and where each component sits)."""
        replica, gpu_ids = _replica_identity()
        return {
            "model": self.model_name,
            "replica": replica,
            "gpu_ids": gpu_ids,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "device": self.engine.model.device,
            "dtype": self.engine.model.dtype_name,
            "pid": os.getpid(),
            "family": self.config.family,
            "loaded": {**self.engine.model.describe(), "warmup": self.warmup.describe()},
        }

    def check_health(self) -> None:
        """Serve calls this periodically; raising makes it replace the replica."""
        if not self._healthy:
            raise RuntimeError(f"model {self.model_name}: device failed; replica must restart")
