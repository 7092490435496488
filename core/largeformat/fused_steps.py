"""One round of denoiser calls of a fused render, and what the rounds cost. No Ray.

At each step the router cuts every tile's crop out of the canvas's model input,
sends it (grouped `tiles_per_call` at a time, in a fixed grouping that depends on
the plan only) to any replica, and fuses the predictions in plan order
(`core.largeformat.fusion_weights.Fuser`) as they come back. Calls are retried like
every model call; a crop that runs out of memory fails the job (a fused tile cannot
be split without changing the image: the job asks for a smaller tile).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from core.errors import JobFailed, TileOutOfMemory
from core.largeformat.fanout import ModelCall, abandon, call_with_retries
from core.largeformat.fused_schemas import DenoiseRequest, DenoiseResult, FusedCalls, FusedSetup
from core.largeformat.fusion_weights import Fuser, FusionWeights
from core.largeformat.job_context import JobContext
from core.largeformat.tiling import Tile
from core.schemas import LargeRenderJob

__all__ = ["DenoiseRound", "StepStats", "fan_out", "model_call"]

Item = TypeVar("Item")
Answer = TypeVar("Answer")


async def model_call(ctx: JobContext, call: ModelCall, request: Any, name: str) -> Any:
    """One call with the job's retries; out of memory fails the job with advice."""
    try:
        return await call_with_retries(call, request, name, ctx.job_id, ctx.retry, ctx.stats)
    except TileOutOfMemory as exc:
        raise JobFailed(
            ctx.job_id,
            f"{name} ran out of memory ({exc.reason}); a fused tile cannot be split: "
            "send a smaller tile_size",
        ) from None


async def fan_out(
    items: Iterable[Item],
    run: Callable[[Item], Awaitable[Answer]],
    take: Callable[[Item, Answer], None],
    limit: int,
) -> None:
    """`run` every item, at most `limit` at once; `take` each answer as it arrives.

    A failure cancels the calls still running and is raised.
    """
    gate = asyncio.Semaphore(limit)

    async def bounded(item: Item) -> tuple[Item, Answer]:
        async with gate:
            return item, await run(item)

    tasks = [asyncio.create_task(bounded(item)) for item in items]
    pending = set(tasks)
    try:
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                take(*task.result())
    except BaseException:
        abandon(tasks)
        raise


@dataclass
class StepStats:
    """Per step: wall time, the busiest replica's compute, all compute, replicas that took part."""

    walls: list[float] = field(default_factory=list)
    critical: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)

    def add(self, wall: float, busy: dict[str, float]) -> None:
        self.walls.append(wall)
        self.critical.append(max(busy.values(), default=0.0))
        self.compute.append(sum(busy.values()))
        self.replicas.append(len(busy))

    def timings(self, fuse_s: float) -> dict[str, float]:
        """Figures for the job's result: the per-step overhead is wall minus the busiest
        replica's compute (transport, queueing, fusing and the scheduler step)."""
        steps = len(self.walls) or 1
        overhead = sum(w - c for w, c in zip(self.walls, self.critical, strict=True)) / steps
        spent = sum(w * n for w, n in zip(self.walls, self.replicas, strict=True))
        return {
            "steps_s": round(sum(self.walls), 4),
            "step_overhead_ms": round(overhead * 1e3, 3),
            "fuse_s": round(fuse_s, 4),
            "step_efficiency": round(sum(self.compute) / spent, 4) if spent else 0.0,
        }


class DenoiseRound:
    """Sends a step's crops to the replicas and fuses their predictions."""

    def __init__(
        self,
        ctx: JobContext,
        job: LargeRenderJob,
        calls: FusedCalls,
        weights: FusionWeights,
        setup: FusedSetup,
        conditioning: Any,
    ):
        """`conditioning` is what the calls carry: `setup.conditioning` shared by reference."""
        self.ctx = ctx
        self.job = job
        self.calls = calls
        self.weights = weights
        self.conditioning = conditioning
        self.key = setup.conditioning.key
        self.wire_dtype = np.dtype(setup.wire_dtype)
        tiles = weights.plan.tiles
        size = job.tiles_per_call
        self.groups = [tiles[i : i + size] for i in range(0, len(tiles), size)]
        self.last_busy: dict[str, float] = {}  # replica -> compute seconds of the last round
        self.fuse_s = 0.0

    async def in_flight(self) -> int:
        """Calls in flight this round: at most what the running replicas take at once
        (replicas x max_ongoing_requests), so that no call waits in the handle's backoff
        while a replica idles at the step's end."""
        limit, per_replica = self.job.max_in_flight, self.job.replica_requests
        if self.calls.replicas is None or not per_replica:
            return limit
        running = max(1, await self.calls.replicas())
        return max(1, min(limit, running * per_replica))

    async def predict(self, model_input: np.ndarray, timestep: float, step: int) -> np.ndarray:
        """The fused (C, H, W) noise prediction of the canvas `model_input` at `timestep`."""
        fuser = Fuser(self.weights, model_input.shape[0])
        model_input = model_input.astype(self.wire_dtype, copy=False)  # once, not per crop
        busy: dict[str, float] = defaultdict(float)

        async def run(group: tuple[Tile, ...]) -> DenoiseResult:
            crops = np.stack([model_input[:, t.y : t.y + t.h, t.x : t.x + t.w] for t in group])
            guidance = self.job.guidance
            request = DenoiseRequest(self.conditioning, self.key, crops, timestep, guidance)
            name = f"step {step + 1} tile {'+'.join(t.key for t in group)}"
            return await model_call(self.ctx, self.calls.denoise, request, name)

        def take(group: tuple[Tile, ...], result: DenoiseResult) -> None:
            fuse_started = time.perf_counter()
            for tile, noise in zip(group, result.noise, strict=True):
                fuser.add(tile, noise)
            self.fuse_s += time.perf_counter() - fuse_started
            busy[result.replica] += result.compute_s
            self.ctx.progress.done += 1

        await fan_out(self.groups, run, take, await self.in_flight())
        self.last_busy = dict(busy)
        return fuser.result()
