"""Fan tiles out to model replicas and stream the blended canvas to a file.

Shared by every tiled job of the router (diffusion refine, tiled txt2img,
upscaling): calls go through Serve handles with bounded retries, at most
`max_in_flight` at once; finished tiles are blended into row bands as they
arrive and the bands go straight to the writer and the seam meter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError

from core.assembler import RowAssembler
from core.errors import JobFailed, TileError, TileOutOfMemory
from core.image_writer import StreamingImageWriter
from core.seams import SeamMeter
from core.tiling import Tile, TilePlan

RETRYABLE = (RayActorError, ActorUnavailableError, BackPressureError)


@dataclass
class CallStats:
    """Retries, splits and where each call ran (for replica-concurrency figures)."""

    retries: int = 0
    splits: int = 0
    intervals: list[tuple[str, float, float]] = field(default_factory=list)

    def record(self, replica: str, started_at: float, compute_s: float) -> None:
        self.intervals.append((replica, started_at, compute_s))

    def replicas_used(self) -> list[str]:
        return sorted({replica for replica, _, _ in self.intervals})

    def max_concurrent_replicas(self) -> int:
        """Most distinct replicas computing at the same instant."""
        events = sorted(
            [(start, 1, replica) for replica, start, _ in self.intervals]
            + [(start + length, -1, replica) for replica, start, length in self.intervals]
        )
        active: dict[str, int] = {}
        best = 0
        for _, delta, replica in events:
            active[replica] = active.get(replica, 0) + delta
            best = max(best, sum(1 for count in active.values() if count > 0))
        return best


async def call_with_retries(
    method: Any, request: Any, name: str, job_id: str, max_attempts: int, stats: CallStats
) -> Any:
    """`await method.remote(request)`, retrying dead or unavailable replicas.

    A replica's `TileOutOfMemory` is re-raised as itself (the caller splits the
    tile); any other error of the model fails the tile with its message.
    """
    attempt = 1
    while True:
        try:
            result = await method.remote(request)
        except RETRYABLE as exc:
            if attempt >= max_attempts:
                raise JobFailed(
                    job_id, f"tile {name} failed after {attempt} attempts: {type(exc).__name__}"
                ) from None
            stats.retries += 1
            await asyncio.sleep(0.2 * attempt)
            attempt += 1
            continue
        except Exception as exc:  # the model raised: OOM splits, anything else fails
            cause = exc.cause if isinstance(exc, RayTaskError) else exc
            if isinstance(cause, TileOutOfMemory):
                raise cause from None
            raise TileError(name, f"{type(cause).__name__}: {cause}") from None
        stats.record(result.replica, result.started_at, result.compute_s)
        return result


@dataclass
class GatherResult:
    """The committed file and what it took."""

    path: Path
    seam_score: float
    tiles_s: float
    blend_s: float
    encode_s: float
    finished_with: Any = None  # what the `finish` callback returned


async def gather_to_file(
    plan: TilePlan,
    render_tile: Callable[[Tile], Awaitable[np.ndarray]],
    path: Path,
    fmt: str,
    dpi: int,
    max_in_flight: int,
    progress: dict[str, Any],
    blend: str = "feather",
    finish: Callable[[np.ndarray], Awaitable[Any]] | None = None,
) -> GatherResult:
    """Render every tile of `plan` (bounded concurrency), blend and write them to `path`.

    `finish`, when given, is awaited with the finished canvas (a writable memory map
    of the spool) before it is encoded, to edit it in place (e.g. composite text); what
    it returns comes back as `GatherResult.finished_with`.
    """
    assembler = RowAssembler(plan, blend=blend)
    meter = SeamMeter(plan)
    gate = asyncio.Semaphore(max_in_flight)
    blend_s = 0.0
    started = time.perf_counter()
    progress.update(total=progress.get("total", 0) + len(plan.tiles))

    async def bounded(tile: Tile) -> tuple[Tile, np.ndarray]:
        async with gate:
            pixels = await render_tile(tile)
        # A copy leaves the replica's result in the object store free to go.
        return tile, np.array(pixels, copy=True)

    with StreamingImageWriter(path, plan.width, plan.height, fmt, dpi=dpi) as writer:
        pending = {asyncio.create_task(bounded(tile)) for tile in plan.tiles}
        try:
            while pending:  # finished tasks are dropped at once, so are their results
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    tile, pixels = task.result()
                    blend_started = time.perf_counter()
                    for y0, band in assembler.add(tile, pixels):
                        writer.write_rows(y0, band)
                        meter.add_rows(y0, band)
                    blend_s += time.perf_counter() - blend_started
                    progress["done"] += 1
        except BaseException:
            for task in pending:
                task.cancel()
            raise
        tiles_s = time.perf_counter() - started
        finished_with = None
        if finish is not None:
            progress["phase"] = "text"
            pixels = writer.pixels()
            try:
                finished_with = await finish(pixels)
            finally:
                pixels.flush()
                del pixels
        encode_started = time.perf_counter()
        committed = writer.commit()
    return GatherResult(
        committed,
        meter.score,
        tiles_s,
        blend_s,
        time.perf_counter() - encode_started,
        finished_with,
    )
