"""`TileRouter`: fans the tiles of a large render out across every model replica.

One async actor per job. It renders (or takes) the base image, plans the
tiles, sends every tile to the model's Serve deployment through its handle,
up to `max_in_flight` at once, gathers them as they complete, colour-matches
each to the base, blends them into finished row bands, and streams those to
the writer, so neither the router nor any replica ever holds the canvas.

Failures: a tile whose replica died or was unavailable is retried (bounded);
a tile that ran out of memory is split into overlapping sub-tiles; anything
else fails the job with an error naming the tile. The writer only ever
renames a complete file into place.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray
from PIL import Image
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError

from core.assembler import RowAssembler
from core.colour import match_low_frequency
from core.config import StorageConfig, deployment_name
from core.errors import JobFailed, RenderClusterError, TileError, TileOutOfMemory
from core.hires import base_size, crop_to_tile, pad_to_render_size, upscaled_crop
from core.image_writer import StreamingImageWriter
from core.schemas import GenerateRequest, GenerateResult, LargeRenderJob, LargeRenderResult
from core.seams import SeamMeter
from core.store import open_store
from core.tiling import Tile, TilePlan, plan_tiles, tile_seed

RETRYABLE = (RayActorError, ActorUnavailableError, BackPressureError)
MAX_SPLIT_DEPTH = 2


@dataclass
class _Stats:
    retries: int = 0
    splits: int = 0
    intervals: list[tuple[str, float, float]] = field(default_factory=list)

    def record(self, result: GenerateResult) -> None:
        self.intervals.append((result.replica, result.started_at, result.compute_s))

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


@ray.remote(num_cpus=0.1, max_concurrency=1000)
class TileRouter:
    """Renders one large-format job across the replicas of one model."""

    def __init__(self, app_name: str, storage: dict, spool_dir: str):
        self.app_name = app_name
        self.store = open_store(StorageConfig.model_validate(storage))
        self.spool_dir = Path(spool_dir)
        self._progress = {"status": "queued", "phase": "queued", "done": 0, "total": 0}

    async def progress(self) -> dict:
        """Tiles done / total, and the phase (base, tiles, encode, done, failed)."""
        return dict(self._progress)

    async def run(self, job: LargeRenderJob) -> LargeRenderResult:
        """Render the job to `job.output_path`; raise `JobFailed` with a clear reason."""
        self._progress.update(status="running", phase="base")
        try:
            result = await self._run(job)
        except JobFailed:
            self._progress.update(status="failed", phase="failed")
            raise
        except RenderClusterError as exc:
            self._progress.update(status="failed", phase="failed")
            raise JobFailed(job.job_id, str(exc)) from None
        self._progress.update(status="done", phase="done")
        return result

    async def _run(self, job: LargeRenderJob) -> LargeRenderResult:
        started = time.perf_counter()
        handle = serve.get_deployment_handle(deployment_name(job.model_name), self.app_name)
        stats = _Stats()
        base, base_dims = await self._base(job, handle, stats)
        base_s = time.perf_counter() - started
        plan = plan_tiles(job.width, job.height, job.tile_size, job.overlap, job.align)
        self._progress.update(phase="tiles", total=len(plan.tiles), done=0)
        assembler = RowAssembler(plan, blend=job.blend)
        meter = SeamMeter(plan)
        blend_s = 0.0
        tiles_started = time.perf_counter()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        spool = self.spool_dir / f"{job.job_id}.{job.format}"
        with StreamingImageWriter(spool, job.width, job.height, job.format, dpi=job.dpi) as writer:
            gate = asyncio.Semaphore(job.max_in_flight)
            pending = [
                asyncio.create_task(self._tile(job, handle, plan, tile, base, gate, stats))
                for tile in plan.tiles
            ]
            try:
                for finished in asyncio.as_completed(pending):
                    tile, pixels = await finished
                    blend_started = time.perf_counter()
                    for y0, band in assembler.add(tile, pixels):
                        writer.write_rows(y0, band)
                        meter.add_rows(y0, band)
                    blend_s += time.perf_counter() - blend_started
                    self._progress["done"] += 1
            except BaseException:
                for task in pending:
                    task.cancel()
                raise
            tiles_s = time.perf_counter() - tiles_started
            self._progress["phase"] = "encode"
            encode_started = time.perf_counter()
            path = writer.commit()
        try:
            size = path.stat().st_size
            self.store.put_file(job.output_key, path)
        finally:
            path.unlink(missing_ok=True)
        encode_s = time.perf_counter() - encode_started
        return LargeRenderResult(
            job_id=job.job_id,
            output_key=job.output_key,
            output_bytes=size,
            width=job.width,
            height=job.height,
            format=job.format,
            tiles=len(plan.tiles),
            redundancy=plan.redundancy,
            seam_score=meter.score,
            replicas_used=sorted({replica for replica, _, _ in stats.intervals}),
            max_concurrent_replicas=stats.max_concurrent_replicas(),
            retries=stats.retries,
            splits=stats.splits,
            base_size=base_dims,
            timings={
                "base_s": round(base_s, 3),
                "tiles_s": round(tiles_s, 3),
                "blend_s": round(blend_s, 3),
                "encode_and_store_s": round(encode_s, 3),
                "total_s": round(time.perf_counter() - started, 3),
            },
        )

    async def _base(
        self, job: LargeRenderJob, handle, stats: _Stats
    ) -> tuple[Image.Image | None, tuple[int, int] | None]:
        """The base image for the hires path (rendered at native size or supplied)."""
        if job.mode == "tiled":
            return None, None
        if job.base_image is not None:
            image = job.base_image
        else:
            width, height = base_size(job.width, job.height, job.native_resolution, job.align)
            request = GenerateRequest(
                prompt=job.prompt,
                negative_prompt=job.negative_prompt,
                width=width,
                height=height,
                steps=job.steps,
                guidance=job.guidance,
                seed=job.seed,
            )
            result = await self._call(handle, request, "base", job, stats)
            image = result.image
        return Image.fromarray(image), (image.shape[1], image.shape[0])

    async def _tile(
        self,
        job: LargeRenderJob,
        handle,
        plan: TilePlan,
        tile: Tile,
        base: Image.Image | None,
        gate: asyncio.Semaphore,
        stats: _Stats,
    ) -> tuple[Tile, np.ndarray]:
        async with gate:
            reference = None if base is None else upscaled_crop(base, plan.width, plan.height, tile)
            pixels = await self._render_region(
                job, handle, tile, reference, tile_seed(job.seed, tile), tile.key, 0, stats
            )
        if reference is not None and job.colour_match:
            pixels = match_low_frequency(pixels, reference)
        return tile, pixels

    async def _render_region(
        self,
        job: LargeRenderJob,
        handle,
        tile: Tile,
        reference: np.ndarray | None,
        seed: int,
        name: str,
        depth: int,
        stats: _Stats,
    ) -> np.ndarray:
        """Render one tile (img2img of its reference, or txt2img); split it on OOM."""
        request = GenerateRequest(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            width=tile.render_w,
            height=tile.render_h,
            steps=job.steps,
            guidance=job.guidance,
            seed=seed,
        )
        if reference is not None:
            request.mode = "img2img"
            request.strength = job.strength
            request.init_image = pad_to_render_size(reference, tile)
        try:
            result = await self._call(handle, request, name, job, stats)
        except TileOutOfMemory as exc:
            if depth >= MAX_SPLIT_DEPTH or min(tile.w, tile.h) < 4 * job.align:
                raise JobFailed(
                    job.job_id, f"tile {name} ran out of memory: {exc.reason}"
                ) from None
            stats.splits += 1
            return await self._split(job, handle, tile, reference, seed, name, depth, stats)
        return crop_to_tile(result.image, tile)

    async def _split(
        self,
        job: LargeRenderJob,
        handle,
        tile: Tile,
        reference: np.ndarray | None,
        seed: int,
        name: str,
        depth: int,
        stats: _Stats,
    ) -> np.ndarray:
        """Render a tile as 2x2 overlapping sub-tiles and blend them back together."""
        half_w = max(job.align, (tile.w // 2 + job.align - 1) // job.align * job.align)
        half_h = max(job.align, (tile.h // 2 + job.align - 1) // job.align * job.align)
        overlap = max(job.align, min(half_w, half_h) // 4 // job.align * job.align)
        sub_plan = plan_tiles(tile.w, tile.h, (half_w, half_h), overlap, job.align)
        assembler = RowAssembler(sub_plan, blend=job.blend)

        async def render(sub: Tile) -> tuple[Tile, np.ndarray]:
            sub_reference = None
            if reference is not None:
                sub_reference = reference[sub.y : sub.y + sub.h, sub.x : sub.x + sub.w]
            pixels = await self._render_region(
                job,
                handle,
                sub,
                sub_reference,
                tile_seed(seed, sub),
                f"{name}/{sub.key}",
                depth + 1,
                stats,
            )
            return sub, pixels

        out = np.empty((tile.h, tile.w, 3), np.uint8)
        for sub, pixels in await asyncio.gather(*(render(s) for s in sub_plan.tiles)):
            for y0, band in assembler.add(sub, pixels):
                out[y0 : y0 + len(band)] = band
        return out

    async def _call(
        self, handle, request: GenerateRequest, name: str, job: LargeRenderJob, stats: _Stats
    ) -> GenerateResult:
        """One model call with bounded retries on dead or unavailable replicas."""
        attempt = 1
        while True:
            try:
                result = await handle.render.remote(request)
            except RETRYABLE as exc:
                if attempt >= job.max_attempts:
                    raise JobFailed(
                        job.job_id,
                        f"tile {name} failed after {attempt} attempts: {type(exc).__name__}",
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
            stats.record(result)
            return result
