"""Fan tiles out to model replicas and stream the blended canvas to a file. No Ray.

Shared by every tiled job (diffusion refine, tiled txt2img, upscaling). A model
call is any `ModelCall` (request -> result); the caller maps its transport's
failures onto the project's errors: `ReplicaUnavailable` and `OverloadedError`
are retried with backoff, `TileOutOfMemory` goes back to the caller (which splits
the tile), any other error fails the tile. At most `max_in_flight` tiles are in
flight at once; finished tiles are blended into row bands as they arrive and the
bands go straight to the writer and the seam meter.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import (
    JobFailed,
    OverloadedError,
    ReplicaUnavailable,
    TileError,
    TileOutOfMemory,
)
from core.image_metadata import ImageMetadata
from core.largeformat.assembler import RowAssembler
from core.largeformat.image_writer import StreamingImageWriter
from core.largeformat.replica_capacity import ReplicaCapacity
from core.largeformat.row_preview import JobPreview
from core.largeformat.seams import SeamMeter
from core.largeformat.shared_pages import release_shared
from core.largeformat.tiling import Tile, TilePlan

__all__ = [
    "RETRYABLE",
    "CallStats",
    "Fanout",
    "GatherResult",
    "JobProgress",
    "ModelCall",
    "OutputFile",
    "abandon",
    "RetryPolicy",
    "call_with_retries",
    "gather_to_file",
    "rows_ahead",
    "SLACK_ROWS",
]

ModelCall = Callable[[Any], Awaitable[Any]]
"""One call of a model replica: a request in, a result (with `replica`, `started_at`,
`compute_s`) out."""

SLACK_ROWS = 3
"""Tile rows sent beyond those the tiles in flight fill. Tiles that came back wait for
the rows above them, so more rows let replicas work past a slow tile and hold more
memory (`bench/bench_row_window.py` measures both)."""

RETRYABLE = (ReplicaUnavailable, OverloadedError)
"""Failures of the call itself, not of its input: sent again after a pause."""


@dataclass
class JobProgress:
    """Where a job stands: status, phase (base, tiles, pass N, text, done), tiles done/total."""

    status: str = "queued"
    phase: str = "queued"
    done: int = 0
    total: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "phase": self.phase, "done": self.done, "total": self.total}


@dataclass
class CallStats:
    """Retries, splits and where each call ran (for replica-concurrency figures)."""

    retries: int = 0
    splits: int = 0
    overload_waits: int = 0  # calls that waited for room in a full queue
    intervals: list[tuple[str, float, float]] = field(default_factory=list)

    def record(self, replica: str, started_at: float, compute_s: float) -> None:
        self.intervals.append((replica, started_at, compute_s))

    def calls(self) -> int:
        """Calls that returned a result."""
        return len(self.intervals)

    def replicas_used(self) -> list[str]:
        return sorted({replica for replica, _, _ in self.intervals})

    def ramp_s(self) -> float:
        """Seconds from the first call's start to the first start of the last replica to get
        one: how long the job took to reach every replica it used."""
        firsts: dict[str, float] = {}
        for replica, start, _ in self.intervals:
            firsts[replica] = min(start, firsts.get(replica, start))
        return max(firsts.values()) - min(firsts.values()) if firsts else 0.0

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


@dataclass(frozen=True)
class RetryPolicy:
    """How often a call is tried and how long to pause between tries (grows linearly).

    A model whose queue is full (`OverloadedError`) is not a failure: the call waits
    for room, `overload_wait_s` growing to `overload_max_wait_s`, as long as it takes.
    """

    max_attempts: int = 3
    backoff_s: float = 0.2
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    overload_wait_s: float = 0.02
    overload_max_wait_s: float = 0.5


async def call_with_retries(
    call: ModelCall,
    request: Any,
    name: str,
    job_id: str,
    policy: RetryPolicy,
    stats: CallStats,
) -> Any:
    """`await call(request)`, sending it again while the failure is `RETRYABLE`.

    A full queue (`OverloadedError`) is waited out without counting as an attempt:
    backpressure never fails an accepted job. `TileOutOfMemory` is re-raised as
    itself (the caller splits the tile); a call still failing after
    `policy.max_attempts` fails the job; any other error of the model fails the
    tile with its message.
    """
    attempt, waits = 1, 0
    while True:
        try:
            result = await call(request)
        except OverloadedError:
            stats.overload_waits += 1
            waits += 1
            growth = policy.overload_wait_s * 2 ** min(waits - 1, 16)
            await policy.sleep(min(growth, policy.overload_max_wait_s))
            continue
        except RETRYABLE as exc:
            if attempt >= policy.max_attempts:
                raise JobFailed(
                    job_id, f"tile {name} failed after {attempt} attempts: {type(exc).__name__}"
                ) from None
            stats.retries += 1
            await policy.sleep(policy.backoff_s * attempt)
            attempt += 1
            continue
        except (TileOutOfMemory, JobFailed):
            raise
        except Exception as exc:  # the model raised: fail the tile with its reason
            raise TileError(name, f"{type(exc).__name__}: {exc}") from None
        stats.record(result.replica, result.started_at, result.compute_s)
        return result


@dataclass(frozen=True)
class OutputFile:
    """Where and how a gathered canvas is written."""

    path: Path
    format: str
    dpi: int = 300
    metadata: ImageMetadata | None = None  # the run id and parameters the file carries
    preview: JobPreview | None = None  # the job's live preview of the rows finished so far


@dataclass(frozen=True)
class Fanout:
    """How tiles go out and come back: at most `max_in_flight` at once (or what `capacity`,
    the model's running replicas, take at once), none more than `rows_ahead` tile rows
    below the first with a tile still out, blended by `blend`."""

    max_in_flight: int = 32
    blend: str = "feather"
    capacity: ReplicaCapacity | None = None
    slack_rows: int = SLACK_ROWS


@dataclass
class GatherResult:
    """The committed file and what it took."""

    path: Path
    seam_score: float
    tiles_s: float
    blend_s: float
    encode_s: float
    finished_with: Any = None  # what the `finish` callback returned
    peak_held_bytes: int = 0  # the most bytes of finished tiles waiting to be blended at once


Finish = Callable[[np.ndarray], Awaitable[Any]]


async def gather_to_file(
    plan: TilePlan,
    render_tile: Callable[[Tile], Awaitable[np.ndarray]],
    output: OutputFile,
    fanout: Fanout,
    progress: JobProgress,
    finish: Finish | None = None,
) -> GatherResult:
    """Render every tile of `plan` (bounded by `fanout`), blend them and write `output`.

    `finish`, when given, is awaited with the finished canvas (a writable memory map
    of the spool) before it is encoded, to edit it in place (e.g. composite text); what
    it returns comes back as `GatherResult.finished_with`.
    """
    started = time.perf_counter()
    size = (plan.width, plan.height)
    sink = output.preview.canvas(*size) if output.preview is not None else None
    writer = StreamingImageWriter(
        output.path, *size, output.format, dpi=output.dpi, metadata=output.metadata, rows_sink=sink
    )
    with writer:
        meter = SeamMeter(plan)
        blend_s, held = await _gather_rows(plan, render_tile, fanout, progress, writer, meter)
        tiles_s = time.perf_counter() - started
        finished_with = None
        if finish is not None:
            progress.phase = "text"
            finished_with = await _finish_canvas(writer, finish)
        encode_started = time.perf_counter()
        committed = writer.commit()
    encode_s = time.perf_counter() - encode_started
    return GatherResult(committed, meter.score, tiles_s, blend_s, encode_s, finished_with, held)


async def _gather_rows(
    plan: TilePlan,
    render_tile: Callable[[Tile], Awaitable[np.ndarray]],
    fanout: Fanout,
    progress: JobProgress,
    writer: StreamingImageWriter,
    meter: SeamMeter,
) -> tuple[float, int]:
    """Render the tiles, blending each into row bands as it arrives; return the blend time
    and the most bytes of tiles held at once.

    Tiles go out in plan order, as many at once as the capacity allows; the next
    one leaves the moment one comes back (before that one is blended, so its
    replica waits for no blending), unless it lies `rows_ahead` tile rows or more
    below the first row with a tile still out: tiles that came back wait in the
    assembler until that row is done, so a slow tile must not let the whole canvas
    pile up behind it.
    """
    assembler = RowAssembler(plan, blend=fanout.blend)
    progress.total += len(plan.tiles)
    sender = _TileSender(plan, render_tile, fanout)
    blend_s = 0.0
    finished: set[asyncio.Task] = set()
    try:
        await sender.send()
        while sender.pending:  # finished tasks are dropped at once, so are their results
            finished, sender.pending = await asyncio.wait(
                sender.pending, return_when=asyncio.FIRST_COMPLETED
            )
            arrived = [task.result() for task in finished]
            sender.returned(tile for tile, _ in arrived)
            await sender.send()
            blend_started = time.perf_counter()
            for tile, pixels in arrived:
                assembler.put(tile, _own_copy(pixels))
                for y0, band in assembler.bands():
                    writer.write_rows(y0, band)
                    meter.add_rows(y0, band)
                    del band  # the next band is blended only after this one is freed
                progress.done += 1
            blend_s += time.perf_counter() - blend_started
            del arrived
    except BaseException:
        abandon([*sender.pending, *finished])
        raise
    return blend_s, assembler.peak_held_bytes


class _TileSender:
    """Sends a plan's tiles in order, as many as the capacity allows, within the row window."""

    def __init__(
        self,
        plan: TilePlan,
        render_tile: Callable[[Tile], Awaitable[np.ndarray]],
        fanout: Fanout,
    ):
        self.plan = plan
        self.render_tile = render_tile
        self.fanout = fanout
        self.capacity = fanout.capacity or ReplicaCapacity(fanout.max_in_flight)
        self.waiting = list(reversed(plan.tiles))
        self.out_by_row: Counter[int] = Counter()
        self.pending: set[asyncio.Task] = set()

    async def send(self) -> None:
        """Send tiles up to the capacity, then let their calls leave before returning."""
        limit = await self.capacity.limit()
        waiting, out_by_row = self.waiting, self.out_by_row
        first_open = min(out_by_row, default=waiting[-1].row if waiting else 0)
        last_row = first_open + rows_ahead(limit, self.plan.cols, self.fanout.slack_rows) - 1
        sent = False
        while waiting and len(self.pending) < limit and waiting[-1].row <= last_row:
            out_by_row[waiting[-1].row] += 1
            self.pending.add(asyncio.create_task(self._rendered(waiting.pop())))
            sent = True
        if sent:
            await asyncio.sleep(0)

    def returned(self, tiles: Iterable[Tile]) -> None:
        """Count `tiles` as back (their rows may close)."""
        for tile in tiles:
            self.out_by_row[tile.row] -= 1
            if not self.out_by_row[tile.row]:
                del self.out_by_row[tile.row]

    async def _rendered(self, tile: Tile) -> tuple[Tile, np.ndarray]:
        return tile, await self.render_tile(tile)


def rows_ahead(in_flight: int, cols: int, slack: int = SLACK_ROWS) -> int:
    """How many tile rows, from the first with a tile still out, tiles may be sent from:
    the rows that `in_flight` tiles fill, and `slack` more."""
    return -(-in_flight // cols) + slack


def _own_copy(pixels: np.ndarray) -> np.ndarray:
    """A copy of a tile, which leaves the replica's result in the object store free to go;
    taken only as the tile is blended, with the pages this process mapped to read it then
    dropped, so tiles waiting their turn cost this process no memory."""
    copy = np.array(pixels, copy=True)
    release_shared(pixels)
    return copy


def abandon(tasks: list[asyncio.Task]) -> None:
    """Cancel the tiles still running; the failures of finished ones are consumed."""
    for task in tasks:
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()


async def _finish_canvas(writer: StreamingImageWriter, finish: Finish) -> Any:
    pixels = writer.pixels()
    try:
        return await finish(pixels)
    finally:
        pixels.flush()
        del pixels
