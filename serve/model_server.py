"""`ModelServer`: the Serve deployment that hosts one model on GPU replicas.

One deployment per configured model (named by `core.config.deployment_name`),
each with its own autoscaling, queue limits and dynamic batching. The torch
work runs in a worker thread so that health checks and batching stay
responsive while a batch renders.
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
from core.schemas import GenerateRequest, GenerateResult
from serve.engine import RenderEngine
from serve.loader import load_model


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
        loaded = load_model(self.config, Path(cache_dir))
        batching = self.config.batching
        self.engine = RenderEngine(
            loaded,
            max_batch_size=batching.max_batch_size,
            fixed_batch_shape=batching.fixed_batch_shape,
            identity=_replica_identity,
            max_pixels_per_call=self.config.max_pixels_per_call,
        )
        self._render_batch.set_max_batch_size(batching.max_batch_size)
        self._render_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
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

    async def info(self) -> dict[str, Any]:
        """Where this replica runs: replica id, logical GPUs, device, dtype, pid."""
        replica, gpu_ids = _replica_identity()
        return {
            "model": self.model_name,
            "replica": replica,
            "gpu_ids": gpu_ids,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "device": self.engine.model.device,
            "dtype": str(self.engine.model.dtype).removeprefix("torch."),
            "pid": os.getpid(),
        }

    def check_health(self) -> None:
        """Serve calls this periodically; raising makes it replace the replica."""
        if not self._healthy:
            raise RuntimeError(f"model {self.model_name}: device failed; replica must restart")
