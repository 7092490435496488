"""The denoising loop of a fused render, with no barrier between steps. No Ray.

The latent canvas is cut into bands across its longer tile axis (tile rows when there
are at least as many rows as columns, else tile columns), at every tile edge, so that
the same lines of tiles cover all of a band. Then:

- a line of tiles goes out for step k as soon as every band under it has taken k steps;
- a band takes step k as soon as every line over it has answered step k: its part of
  each covering tile's prediction is added in plan order (`Fuser`'s order) and its own
  scheduler state steps (`LatentSampler.band`).

So the top of the canvas runs into step k + 1 while the bottom still computes step k:
no replica waits for the slowest tile of a step, and fusing and scheduler steps overlap
other tiles' compute. The values are those of stepping the whole canvas once per step:
each pixel's prediction is summed from the same tiles in the same order, and every
scheduler step is elementwise.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.largeformat.fanout import abandon
from core.largeformat.fused_schemas import DenoiseRequest, DenoiseResult, FusedCalls, FusedSetup
from core.largeformat.fused_steps import model_call
from core.largeformat.fusion_weights import FusionWeights
from core.largeformat.job_context import JobContext
from core.largeformat.latent_sampler import LatentSampler
from core.largeformat.replica_capacity import ReplicaCapacity
from core.largeformat.tiling import Tile
from core.schemas import LargeRenderJob

__all__ = ["Wavefront"]


@dataclass(frozen=True)
class _Piece:
    """A tile seen across the band axis: its line, extent along the axis and across it."""

    tile: Tile
    line: int
    start: int
    length: int
    cross: slice


@dataclass
class _Band:
    """Rows (along the band axis) covered by the same tile lines, and their state."""

    index: int
    start: int
    stop: int
    lines: tuple[int, ...]
    sampler: LatentSampler
    latents: torch.Tensor = field(repr=False)  # (1, C, stop - start, cross) float32
    model_input: np.ndarray = field(repr=False)  # (C, stop - start, cross), wire dtype
    covering: list[_Piece] = field(default_factory=list, repr=False)  # in plan order
    step: int = 0
    sum: torch.Tensor | None = field(default=None, repr=False)  # its fused prediction so far
    waiting: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    added: int = 0  # covering pieces added to `sum`, in plan order


@dataclass
class WaveStats:
    """Where the denoising phase's time went."""

    busy: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    fuse_s: float = 0.0
    sampler_s: float = 0.0

    def timings(self, started: float, ended: float, steps: int) -> dict[str, float]:
        """Per-step overhead: the phase's wall beyond its compute spread over the replicas."""
        wall, compute, replicas = ended - started, sum(self.busy.values()), len(self.busy)
        idle = wall - compute / max(1, replicas)
        return {
            "steps_s": round(wall, 4),
            "step_overhead_ms": round(idle / max(1, steps) * 1e3, 3),
            "step_efficiency": round(compute / (replicas * wall), 4) if wall and replicas else 0,
            "fill_ms": round((min(self.starts, default=started) - started) * 1e3, 3),
            "drain_ms": round((ended - max(self.ends, default=ended)) * 1e3, 3),
            "fuse_s": round(self.fuse_s, 4),
            "sampler_s": round(self.sampler_s, 4),
        }


class Wavefront:
    """Runs every step of a fused render's denoising over the replicas; see the module."""

    def __init__(
        self,
        ctx: JobContext,
        job: LargeRenderJob,
        calls: FusedCalls,
        weights: FusionWeights,
        setup: FusedSetup,
        sampler: LatentSampler,
    ):
        plan = weights.plan
        self.ctx, self.job, self.calls, self.weights = ctx, job, calls, weights
        self.sampler = sampler
        self.timesteps = sampler.timesteps
        self.key = setup.conditioning.key
        self.wire = np.dtype(setup.wire_dtype)
        self.transposed = plan.cols > plan.rows  # bands across columns of tiles
        self.pieces = [self._piece(tile) for tile in plan.tiles]
        self.lines: dict[int, list[_Piece]] = defaultdict(list)
        for piece in self.pieces:
            self.lines[piece.line].append(piece)
        size = job.tiles_per_call
        self.groups = {
            line: [pieces[i : i + size] for i in range(0, len(pieces), size)]
            for line, pieces in self.lines.items()
        }
        self.stats = WaveStats()
        self.bands: list[_Band] = []
        self.line_bands: dict[int, list[_Band]] = {}
        self.line_next: dict[int, int] = dict.fromkeys(self.lines, 0)
        self.capacity = ReplicaCapacity(job.max_in_flight, job.replica_requests, calls.replicas)
        self._weight_cache: dict[int, torch.Tensor] = {}

    @property
    def calls_per_step(self) -> int:
        """Denoiser calls each step makes (tiles grouped `tiles_per_call` per line)."""
        return sum(len(groups) for groups in self.groups.values())

    def _piece(self, tile: Tile) -> _Piece:
        if self.transposed:
            return _Piece(tile, tile.col, tile.x, tile.w, slice(tile.y, tile.y + tile.h))
        return _Piece(tile, tile.row, tile.y, tile.h, slice(tile.x, tile.x + tile.w))

    def _orient(self, array: np.ndarray) -> np.ndarray:
        """A (C, h, w) array in band orientation (bands along axis 1), and back."""
        return array.transpose(0, 2, 1) if self.transposed else array

    def _cut_bands(self, latents: torch.Tensor, conditioning: Any) -> None:
        """Split the starting latents (1, C, H, W) into bands with their own samplers."""
        self.conditioning = conditioning
        oriented = latents.transpose(2, 3) if self.transposed else latents
        edges = sorted({p.start for p in self.pieces} | {p.start + p.length for p in self.pieces})
        spans = list(zip(edges, edges[1:], strict=False))
        for index, (a, b) in enumerate(spans):
            lines = tuple(
                sorted({p.line for p in self.pieces if p.start <= a < p.start + p.length})
            )
            sampler = self.sampler.band(index, len(spans))
            part = oriented[:, :, a:b].contiguous()
            model_input = sampler.model_input(part, self.timesteps[0], self.wire)
            covering = sorted(
                (p for p in self.pieces if p.line in lines), key=lambda p: p.tile.index
            )
            self.bands.append(_Band(index, a, b, lines, sampler, part, model_input, covering))
        for line, pieces in self.lines.items():
            start, stop = pieces[0].start, pieces[0].start + pieces[0].length
            self.line_bands[line] = [b for b in self.bands if start <= b.start and b.stop <= stop]

    async def run(self, latents: torch.Tensor, conditioning: Any) -> torch.Tensor:
        """Denoise `latents` (1, C, H, W) through every timestep; the final latents.

        `conditioning` is what every call carries (the job's, shared by reference).
        """
        started = time.time()
        self._cut_bands(latents, conditioning)
        ready: list[tuple[int, int, int]] = []
        for line in self.lines:
            self._push(line, ready)
        limit = await self.capacity.limit()
        running: dict[asyncio.Task, tuple[int, int, int]] = {}
        try:
            while any(band.step < len(self.timesteps) for band in self.bands):
                while ready and len(running) < limit:
                    item = heapq.heappop(ready)
                    running[asyncio.create_task(self._call(*item))] = item
                if not running:
                    raise RuntimeError("fused render stalled: no tile line is ready")
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    self._take(*running.pop(task), task.result(), ready)
                limit = await self.capacity.limit()
        except BaseException:
            abandon(list(running))
            raise
        self.ended = time.time()
        self.started = started
        final = torch.cat([band.latents for band in self.bands], dim=2)
        return final.transpose(2, 3).contiguous() if self.transposed else final

    def timings(self) -> dict[str, float]:
        return self.stats.timings(self.started, self.ended, len(self.timesteps))

    def _push(self, line: int, ready: list[tuple[int, int, int]]) -> None:
        """Queue the line's next step if every band under it has reached that step."""
        step = self.line_next[line]
        if step >= len(self.timesteps) or any(b.step < step for b in self.line_bands[line]):
            return
        for group in range(len(self.groups[line])):
            heapq.heappush(ready, (step, line, group))
        self.line_next[line] = step + 1

    async def _call(self, step: int, line: int, group: int) -> DenoiseResult:
        pieces = self.groups[line][group]
        bands = self.line_bands[line]
        crops = np.stack(
            [
                self._orient(np.concatenate([b.model_input[:, :, p.cross] for b in bands], axis=1))
                for p in pieces
            ]
        )
        timestep = float(self.timesteps[step])
        request = DenoiseRequest(self.conditioning, self.key, crops, timestep, self.job.guidance)
        name = f"step {step + 1} tile {'+'.join(p.tile.key for p in pieces)}"
        return await model_call(self.ctx, self.calls.denoise, request, name)

    def _take(self, step: int, line: int, group: int, result: DenoiseResult, ready: list) -> None:
        """Add a call's predictions to the bands under its line; step the bands now complete."""
        self.ctx.progress.done += 1
        self.stats.busy[result.replica] += result.compute_s
        self.stats.starts.append(result.started_at)
        self.stats.ends.append(result.started_at + result.compute_s)
        fuse_started = time.perf_counter()
        for piece, noise in zip(self.groups[line][group], result.noise, strict=True):
            oriented = self._orient(noise)
            for band in self.line_bands[line]:
                part = oriented[:, band.start - piece.start : band.stop - piece.start]
                band.waiting[piece.tile.index] = part
        self.stats.fuse_s += time.perf_counter() - fuse_started
        for band in self.line_bands[line]:
            if self._fuse(band):
                self._advance(band, ready)

    def _fuse(self, band: _Band) -> bool:
        """Add the band's waiting pieces that are next in plan order; whether it is complete."""
        started = time.perf_counter()
        covering = band.covering
        if band.sum is None:
            band.sum = torch.zeros(band.model_input.shape, dtype=torch.float32)
        while band.added < len(covering) and covering[band.added].tile.index in band.waiting:
            piece = covering[band.added]
            weights = self._weights(piece)[band.start - piece.start : band.stop - piece.start]
            noise = torch.from_numpy(band.waiting.pop(piece.tile.index))
            band.sum[:, :, piece.cross].addcmul_(weights, noise)  # one pass, no temporary
            band.added += 1
        self.stats.fuse_s += time.perf_counter() - started
        return band.added == len(covering)

    def _weights(self, piece: _Piece) -> torch.Tensor:
        """The piece's fusion weights in band orientation (cached per tile)."""
        found = self._weight_cache.get(piece.tile.index)
        if found is None:
            weights = self.weights.tile(piece.tile)
            found = torch.from_numpy(
                np.ascontiguousarray(weights.T if self.transposed else weights)
            )
            self._weight_cache[piece.tile.index] = found
        return found

    def _advance(self, band: _Band, ready: list) -> None:
        """Step the band with its fused prediction; queue the lines now ready."""
        started = time.perf_counter()
        t = self.timesteps[band.step]
        band.latents = band.sampler.step(band.sum.numpy(), t, band.latents)
        band.step += 1
        band.sum, band.added = None, 0
        if band.step < len(self.timesteps):
            t = self.timesteps[band.step]
            band.model_input = band.sampler.model_input(band.latents, t, self.wire)
        self.stats.sampler_s += time.perf_counter() - started
        slowest = min(b.step for b in self.bands)
        self.ctx.progress.phase = (
            f"step {min(slowest + 1, len(self.timesteps))}/{len(self.timesteps)}"
        )
        for line in band.lines:
            self._push(line, ready)
