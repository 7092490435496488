"""What a running tiled job works with, no Ray: its model call, retries, progress, spool.

`JobContext` is shared by the refine (hires / tiled) and upscale jobs: it sends
one request to the model with retries, names spool files, commits the finished
file to the store and builds the `LargeRenderResult`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.jobs.checkpoints import Checkpoints
from core.largeformat.fanout import (
    CallStats,
    Fanout,
    GatherResult,
    JobProgress,
    ModelCall,
    RetryPolicy,
    call_with_retries,
)
from core.largeformat.replica_capacity import ReplicaCapacity, ReplicaCount
from core.largeformat.row_preview import JobPreview
from core.largeformat.tiling import TilePlan
from core.schemas import (
    LargeFormat,
    LargeRenderJob,
    LargeRenderResult,
    UpscaleJob,
    UpscalerCalls,
)
from core.store import ArtifactStore

__all__ = ["JobContext", "JobOutput", "UpscalerCall"]


@dataclass(frozen=True)
class JobOutput:
    """Where a job's file goes: the store key, its format and DPI."""

    key: str
    format: LargeFormat
    dpi: int


@dataclass(frozen=True)
class UpscalerCall:
    """How a hires job reaches its upscaler model: the call and its running replicas."""

    call: ModelCall
    replicas: ReplicaCount | None = None


@dataclass
class JobContext:
    """One job's model call, retry policy, statistics, progress and spool directory."""

    job_id: str
    call: ModelCall
    store: ArtifactStore
    spool_dir: Path
    progress: JobProgress
    retry: RetryPolicy = RetryPolicy()
    stats: CallStats = field(default_factory=CallStats)
    upscaler_stats: CallStats = field(default_factory=CallStats)  # its upscaler model's calls
    started: float = field(default_factory=time.perf_counter)
    checkpoints: Checkpoints | None = None  # finished pieces kept for a resumed attempt
    base_call: ModelCall | None = None  # the hosted model that draws the base, if not `call`
    base_provider: dict[str, Any] | None = None  # that hosted call, as its record keeps it
    preview: JobPreview | None = None  # the live preview of finished rows (stored jobs)
    replicas: ReplicaCount | None = None  # counts the model's running replicas (None: unknown)
    upscaler: UpscalerCall | None = None  # a hires job's upscaler model (None: Lanczos)
    tiles_reused: int = 0  # the job's own tiles taken from an earlier attempt's checkpoints

    def upscaling(self) -> JobContext:
        """This job's context for its upscaler model's calls: the same progress and
        checkpoints, statistics of their own (`upscaler_stats`), no preview (the preview
        shows the refined canvas)."""
        assert self.upscaler is not None, "a hires job with an upscaler model needs its call"
        return replace(
            self,
            call=self.upscaler.call,
            stats=self.upscaler_stats,
            replicas=self.upscaler.replicas,
            preview=None,
            upscaler=None,
        )

    def fanout(self, job: LargeRenderJob | UpscaleJob, blend: str = "feather") -> Fanout:
        """How the job's tiles go out: as many at once as the model's replicas take."""
        capacity = ReplicaCapacity(job.max_in_flight, job.replica_requests, self.replicas)
        return Fanout(job.max_in_flight, blend, capacity)

    async def piece(
        self, name: str, make: Callable[[], Awaitable[np.ndarray]], tile: bool = True
    ) -> np.ndarray:
        """The piece `name` from an earlier attempt's checkpoint, or `make()` and keep it
        (`tile`: a tile of the job's output plan, counted in `tiles_reused` when reused;
        not a base render or an earlier upscale pass's tile)."""
        if self.checkpoints is None:
            return await make()
        found = await asyncio.to_thread(self.checkpoints.load, name)
        if found is not None:
            if tile:
                self.tiles_reused += 1
            return found
        pixels = await make()
        await asyncio.to_thread(self.checkpoints.save, name, pixels)
        return pixels

    async def call_model(self, request: Any, name: str, call: ModelCall | None = None) -> Any:
        """One call (default: the tile model's) for the part of the job called `name`,
        retried per the policy."""
        return await call_with_retries(
            call or self.call, request, name, self.job_id, self.retry, self.stats
        )

    def spool(self, name: str) -> Path:
        """A file of this job in the spool directory."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        return self.spool_dir / name

    def commit(self, gathered: GatherResult, key: str) -> int:
        """Upload the finished file to the store (then drop it); return its size."""
        try:
            size = gathered.path.stat().st_size
            self.store.put_file(key, gathered.path)
        finally:
            gathered.path.unlink(missing_ok=True)
        return size

    def _upscaler_calls(self) -> UpscalerCalls | None:
        """The upscaler model's calls (None: the job has no upscaler model)."""
        if self.upscaler is None:
            return None
        stats = self.upscaler_stats
        return UpscalerCalls(
            stats.calls(), stats.replicas_used(), stats.retries, stats.overload_waits
        )

    def result(
        self,
        output: JobOutput,
        plan: TilePlan,
        gathered: GatherResult,
        base_size: tuple[int, int] | None = None,
        base_s: float = 0.0,
    ) -> LargeRenderResult:
        """Commit the gathered file and describe the finished job."""
        size = self.commit(gathered, output.key)
        return LargeRenderResult(
            job_id=self.job_id,
            output_key=output.key,
            output_bytes=size,
            width=plan.width,
            height=plan.height,
            format=output.format,
            tiles=len(plan.tiles),
            redundancy=plan.redundancy,
            seam_score=gathered.seam_score,
            replicas_used=self.stats.replicas_used(),
            max_concurrent_replicas=self.stats.max_concurrent_replicas(),
            replica_ramp_s=round(self.stats.ramp_s(), 3),
            retries=self.stats.retries,
            overload_waits=self.stats.overload_waits,
            splits=self.stats.splits,
            tiles_reused=self.tiles_reused,
            base_size=base_size,
            upscaler_calls=self._upscaler_calls(),
            timings={
                "base_s": round(base_s, 3),
                "tiles_s": round(gathered.tiles_s, 3),
                "blend_s": round(gathered.blend_s, 3),
                "encode_and_store_s": round(gathered.encode_s, 3),
                "total_s": round(time.perf_counter() - self.started, 3),
            },
        )
