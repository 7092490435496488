"""`TileRouter`: the Ray shell of a large-format job.

One async actor per job. It gives the job's logic (`core.largeformat.runner.
TileJobRunner`: base render, tiles, OOM splits, upscale passes, text, commit)
the model's Serve handle as its model call (a fused job: the model's fused-render
methods, see `core.largeformat.fused`), and answers progress queries while
the job runs. Neither the router nor any replica ever holds the decoded canvas
(a fused job's router holds its latent canvas, 1/64 of the pixels); the output is
committed to the artifact store only when complete.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import ray
from ray import serve

from actors import ray_metrics
from actors.serve_calls import deployment_call, running_replicas, running_replicas_of
from core.config import StorageConfig, deployment_name
from core.largeformat.assembler import warm_up
from core.largeformat.fused_schemas import FusedCalls
from core.largeformat.job_context import UpscalerCall
from core.largeformat.replica_capacity import ReplicaCount
from core.largeformat.runner import TileJobRunner
from core.schemas import LargeRenderJob, LargeRenderResult, UpscaleJob
from core.store import open_store

__all__ = ["TILES_BY_REFERENCE", "TileRouter", "tile_handle"]

TILES_BY_REFERENCE = True
"""The router's calls to its model go as Ray actor calls, not over gRPC (the
service's other Serve calls, `serve.local_cluster.SERVE_TRANSPORT`): a tile comes
back through the object store, so the tiles that wait for their row cost the router
no memory (`core.largeformat.shared_pages`), and a 3 MB tile travels in 12 ms, not
26 (bench_fanout.py's transfer lines). Over gRPC, the null model's 256 px tiles kept
8 replicas busier (0.97 against 0.95 at max_ongoing_requests 2 and 4), but the
router's peak grew from 41 to 95 MiB at 8192x32768 (bench_router_memory.py)."""


# glibc raises its mmap threshold after large frees, so tile-sized arrays then come from
# the heap and a long job's resident memory grows with the canvas height; a fixed
# threshold returns them to the system as they are freed (bench_router_memory.py).
ROUTER_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def tile_handle(app_name: str, model_name: str) -> Any:
    """The model's Serve handle as a router uses it: Ray actor calls (`TILES_BY_REFERENCE`)."""
    handle = serve.get_deployment_handle(deployment_name(model_name), app_name)
    return handle.options(_by_reference=TILES_BY_REFERENCE)


@ray.remote(num_cpus=0.1, max_concurrency=1000, runtime_env={"env_vars": ROUTER_ENV})
class TileRouter:
    """Renders one large-format or upscale job across the replicas of one model."""

    def __init__(self, app_name: str, storage: dict, spool_dir: str):
        threading.Thread(target=warm_up, name="blend-warm-up", daemon=True).start()
        ray_metrics.install()
        self.app_name = app_name
        self.job_id: str | None = None
        store = open_store(StorageConfig.model_validate(storage))
        self.runner = TileJobRunner(store, Path(spool_dir))
        self._handles: dict[str, Any] = {}  # model name -> its deployment's Serve handle

    async def where(self) -> dict[str, Any]:
        """The node and process the router runs in (for operators and failure tests)."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    async def job(self) -> str | None:
        """The id of the job this router works on (None while it waits in the pool)."""
        return self.job_id

    async def prepare(self, model_names: list[str], timeout_s: float = 30.0) -> list[str]:
        """Open the models' Serve handles before a job comes (a router waiting in the pool).

        A handle's first call waits for it to learn the deployment's replicas and their
        queues; one `info` call per model does that here, so a job's first tiles go out
        at once (bench_fanout.py: "pool router"). A model with no running replica is
        skipped: a call would wake a deployment scaled to zero. Returns the models whose
        handles answered; the others are left to their jobs' own calls.
        """
        ready = []
        running = await asyncio.to_thread(running_replicas_of, self.app_name, model_names)
        for name in model_names:
            if running[name] == 0:
                continue
            try:
                await asyncio.wait_for(self._handle(name).info.remote(), timeout_s)
            except Exception:  # any failure leaves the model to its job's own calls
                self._handles.pop(name, None)
                continue
            ready.append(name)
        return ready

    async def progress(self) -> dict[str, Any]:
        """Tiles done / total, and the phase (base, tiles, pass N, text, done, failed)."""
        return self.runner.progress.as_dict()

    async def run(self, job: LargeRenderJob) -> LargeRenderResult:
        """Render a hires, tiled or fused job into the store; raise `JobFailed` with a reason."""
        self.job_id = job.job_id
        call = self._call(job.model_name, "render")
        base = job.base_model_name
        base_call = None if base is None else self._call(base, "render")
        if job.mode == "fused":
            calls = self._fused_calls(job.model_name, call)
            return await self.runner.fused(job, calls, base_call)
        upscaler = None
        if job.upscaler is not None:  # the base goes through an upscaler model first
            name = job.upscaler.model_name
            upscaler = UpscalerCall(self._call(name, "upscale"), self._replicas(name))
        replicas = self._replicas(job.model_name)
        return await self.runner.render(job, call, base_call, replicas, upscaler)

    def _handle(self, model_name: str) -> Any:
        if model_name not in self._handles:
            self._handles[model_name] = tile_handle(self.app_name, model_name)
        return self._handles[model_name]

    def _call(self, model_name: str, method: str) -> Any:
        return deployment_call(self._handle(model_name), model_name, method)

    def _replicas(self, model_name: str) -> ReplicaCount:
        """Counts the model's running replicas (off the event loop: it asks the controller)."""

        async def replicas() -> int:
            return await asyncio.to_thread(running_replicas, self.app_name, model_name)

        return replicas

    def _fused_calls(self, model_name: str, render: Any) -> FusedCalls:
        """The model's fused-render methods; the job's conditioning goes to the object store
        once (`ray.put`, owned by this actor) and every denoise call carries the reference."""

        def method(name: str) -> Any:
            return self._call(model_name, name)

        return FusedCalls(
            render=render,
            encode_prompt=method("encode_prompt"),
            denoise=method("denoise"),
            decode=method("decode"),
            encode_image=method("encode_image"),
            share=ray.put,
            replicas=self._replicas(model_name),
        )

    async def upscale(self, job: UpscaleJob) -> LargeRenderResult:
        """Upscale an image (tiled, chained passes) into the store."""
        self.job_id = job.job_id
        call = self._call(job.model_name, "upscale")
        return await self.runner.upscale(job, call, self._replicas(job.model_name))
