"""`UpscalerServer`: the Serve deployment that hosts one upscaler model (family 'upscaler').

Bound by `serve.app.application` in place of `ModelServer` for upscaler
models, with the same deployment options (autoscaling, queue limits, GPUs per
replica). A replica with a logical GPU runs the torch backend on CUDA (or,
with `upscaler.backend: ncnn`, ncnn on Vulkan when it finds a device); one
without runs ncnn on the CPU. The upscaling runs in a worker thread so that
health checks stay responsive while a tile upscales.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import ray
import torch
from ray import serve

from core.config import ModelConfig
from core.errors import TileOutOfMemory
from core.largeformat.upscaling import UpscaleRequest, UpscaleResult
from serve.upscaler import choose_backend, load_upscaler, vulkan_device_count
from serve.warmup import warm_up_upscaler


def _replica_identity() -> tuple[str, list[str]]:
    context = serve.get_replica_context()
    gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
    return context.replica_id.unique_id, gpu_ids


def _vulkan_device(gpu_ids: list[str]) -> int | None:
    """The Vulkan device of this replica's first GPU, or None (CPU) when ncnn sees none."""
    if not gpu_ids:
        return None
    count = vulkan_device_count()
    # Ray hands out physical GPU ids; Vulkan numbers the same devices from 0.
    return int(float(gpu_ids[0])) % count if count else None


@serve.deployment
class UpscalerServer:
    """Hosts one upscaler model; upscales one image or padded tile per call."""

    def __init__(self, model_name: str, model: dict[str, Any], cache_dir: str):
        del cache_dir  # upscaler weights are read in place (package or .param path)
        self.model_name = model_name
        self.config = ModelConfig.model_validate(model)
        if self.config.upscaler is None:
            raise ValueError(f"model {model_name} is not an upscaler (family {self.config.family})")
        _, gpu_ids = _replica_identity()
        cuda = bool(gpu_ids) and torch.cuda.is_available()
        backend = choose_backend(self.config.upscaler.backend, cuda)
        self.engine = load_upscaler(
            self.config.source,
            self.config.upscaler.scale,
            threads=self.config.torch_threads,
            vulkan_device=_vulkan_device(gpu_ids) if backend == "ncnn" else None,
            backend=backend,
        )
        self.warmup = warm_up_upscaler(self.engine.upscale)
        self._healthy = True

    async def upscale(self, request: UpscaleRequest) -> UpscaleResult:
        """Upscale `request.image` by the model's scale and keep `request.crop` of it."""
        height, width = request.image.shape[:2]
        limit = self.config.max_pixels_per_call
        if limit and width * height > limit:
            raise TileOutOfMemory(
                request.key or f"{width}x{height}",
                f"{width}x{height} is over the replica's limit of {limit} pixels per call",
            )
        started_at = time.time()
        started = time.perf_counter()
        try:
            image = await asyncio.to_thread(self.engine.upscale, request.image, request.crop)
        except RuntimeError:
            if self.engine.device != "cpu":  # a failed GPU run: let Serve replace us
                self._healthy = False
            raise
        replica, gpu_ids = _replica_identity()
        return UpscaleResult(
            image=image,
            compute_s=time.perf_counter() - started,
            replica=replica,
            gpu_ids=gpu_ids,
            started_at=started_at,
        )

    async def info(self) -> dict[str, Any]:
        """Where this replica runs (replica id, logical GPUs, backend, device, scale, pid) and
        its warm-up."""
        replica, gpu_ids = _replica_identity()
        return {
            "model": self.model_name,
            "replica": replica,
            "gpu_ids": gpu_ids,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "backend": self.engine.backend,
            "device": self.engine.device,
            "scale": self.engine.scale,
            "threads": self.config.torch_threads,
            "pid": os.getpid(),
            "warmup": self.warmup.describe(),
        }

    def check_health(self) -> None:
        """Serve calls this periodically; raising makes it replace the replica."""
        if not self._healthy:
            raise RuntimeError(f"model {self.model_name}: device failed; replica must restart")
