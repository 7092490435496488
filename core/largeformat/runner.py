"""`TileJobRunner`: the tile router's job logic, no Ray.

It runs one hires, tiled, fused or upscale job on whatever `ModelCall` reaches the
model's replicas (a Serve handle in the router actor, a plain function in
tests), keeps the job's progress and turns every failure of the project's own
into `JobFailed` with a reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path

from core import telemetry
from core.errors import JobFailed, RenderClusterError
from core.jobs.checkpoints import Checkpoints
from core.largeformat.fanout import JobProgress, ModelCall, RetryPolicy
from core.largeformat.fused_schemas import FusedCalls
from core.largeformat.job_context import JobContext, UpscalerCall
from core.largeformat.refine import draw_base, render_large
from core.largeformat.replica_capacity import ReplicaCount
from core.largeformat.row_preview import JobPreview
from core.largeformat.upscale_job import upscale_image
from core.schemas import LargeRenderJob, LargeRenderResult, UpscaleJob
from core.store import ArtifactStore

__all__ = ["TileJobRunner"]


class TileJobRunner:
    """Runs tiled jobs into `store`, spooling their files in `spool_dir`."""

    def __init__(self, store: ArtifactStore, spool_dir: Path, retry: RetryPolicy | None = None):
        self.store = store
        self.spool_dir = spool_dir
        self.retry = retry or RetryPolicy()
        self.progress = JobProgress()

    async def render(
        self,
        job: LargeRenderJob,
        call: ModelCall,
        base_call: ModelCall | None = None,
        replicas: ReplicaCount | None = None,
        upscaler: UpscalerCall | None = None,
    ) -> LargeRenderResult:
        """Render a hires or tiled job (`base_call`: the hosted model of its base; `replicas`
        counts the model's running replicas; `upscaler`: the model that upscales the base,
        when `job.upscaler` names one); raise `JobFailed` with a reason."""
        ctx = self._context(job, call, base_call, replicas)
        ctx.upscaler = upscaler
        upscaler_model = None if job.upscaler is None else job.upscaler.model_name
        return await self._guarded(ctx, render_large(job, ctx), job.model_name, upscaler_model)

    async def fused(
        self, job: LargeRenderJob, calls: FusedCalls, base_call: ModelCall | None = None
    ) -> LargeRenderResult:
        """Render a fused job (tiles fused at every step; a hosted model's base first, when
        the job has one); raise `JobFailed` with a reason."""
        from core.largeformat.fused import render_fused  # torch and diffusers: fused jobs only

        ctx = self._context(job, calls.render, base_call, calls.replicas)

        async def work() -> LargeRenderResult:
            drawn = job
            if job.base_model_name is not None and job.base_image is None:
                ctx.progress.phase = "base"
                drawn = replace(job, base_image=await draw_base(job, ctx))
            return await render_fused(drawn, ctx, calls)

        return await self._guarded(ctx, work(), job.model_name)

    async def upscale(
        self, job: UpscaleJob, call: ModelCall, replicas: ReplicaCount | None = None
    ) -> LargeRenderResult:
        """Upscale an image (tiled, chained passes); raise `JobFailed` with a reason."""
        ctx = self._context(job, call, replicas=replicas)
        return await self._guarded(ctx, upscale_image(job, ctx), job.model_name)

    def _context(
        self,
        job: LargeRenderJob | UpscaleJob,
        call: ModelCall,
        base_call: ModelCall | None = None,
        replicas: ReplicaCount | None = None,
    ) -> JobContext:
        retry = RetryPolicy(job.max_attempts, self.retry.backoff_s, self.retry.sleep)
        pieces = Checkpoints(self.store, job.job_id) if job.checkpoint else None
        preview = JobPreview(self.store, job.job_id, job.owner) if job.preview else None
        return JobContext(
            job.job_id,
            call,
            self.store,
            self.spool_dir,
            self.progress,
            retry,
            checkpoints=pieces,
            base_call=base_call,
            preview=preview,
            replicas=replicas,
        )

    async def _guarded(
        self,
        ctx: JobContext,
        work: Awaitable[LargeRenderResult],
        model: str,
        upscaler_model: str | None = None,
    ) -> LargeRenderResult:
        job_id = ctx.job_id
        self.progress.status, self.progress.phase = "running", "starting"
        try:
            result = await work
        except JobFailed:
            self.progress.status = self.progress.phase = "failed"
            raise
        except RenderClusterError as exc:
            self.progress.status = self.progress.phase = "failed"
            raise JobFailed(job_id, str(exc)) from None
        finally:
            telemetry.count("rendercluster_tile_retries_total", ctx.stats.retries, model=model)
            if upscaler_model is not None:
                retries = ctx.upscaler_stats.retries
                telemetry.count("rendercluster_tile_retries_total", retries, model=upscaler_model)
        telemetry.count("rendercluster_tiles_total", result.tiles_rendered, model=model)
        telemetry.observe("rendercluster_seam_score", result.seam_score, model=model)
        result.provider = ctx.base_provider
        if ctx.checkpoints is not None:
            await asyncio.to_thread(ctx.checkpoints.clear)
        self.progress.status = self.progress.phase = "done"
        return result
