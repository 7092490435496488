"""`TileRouter`: fans the tiles of a large render out across every model replica.

One async actor per job. For a diffusion job it renders (or takes) the base
image, plans the tiles, has every tile refined (or drawn, in tiled mode) by
the model's replicas, colour-matches each to the base and streams the blended
rows to the output, compositing and gating the job's text boxes into the
finished canvas before it is encoded; for an upscale job it sends padded source tiles to the
upscaler's replicas, chaining passes for scales beyond one pass. Neither the
router nor any replica ever holds the canvas; the output is committed to the
artifact store only when complete.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyvips
import ray
from PIL import Image
from ray import serve

from actors.fanout import CallStats, GatherResult, call_with_retries, gather_to_file
from core.assembler import RowAssembler
from core.colour import match_low_frequency
from core.config import StorageConfig, deployment_name
from core.errors import JobFailed, RenderClusterError, TileOutOfMemory
from core.hires import base_size, crop_to_tile, pad_to_render_size, upscaled_crop
from core.schemas import GenerateRequest, LargeRenderJob, LargeRenderResult, UpscaleJob
from core.store import open_store
from core.tiling import Tile, TilePlan, plan_tiles, tile_seed
from core.typography.delivery import TypographyReport, deliver_text, inpaint_pass
from core.upscaling import UpscaleRequest, plan_upscale
from core.validation import MAX_CALL_AREA

MAX_SPLIT_DEPTH = 2


@ray.remote(num_cpus=0.1, max_concurrency=1000)
class TileRouter:
    """Renders one large-format or upscale job across the replicas of one model."""

    def __init__(self, app_name: str, storage: dict, spool_dir: str):
        self.app_name = app_name
        self.store = open_store(StorageConfig.model_validate(storage))
        self.spool_dir = Path(spool_dir)
        self._progress: dict[str, Any] = {
            "status": "queued",
            "phase": "queued",
            "done": 0,
            "total": 0,
        }

    async def progress(self) -> dict:
        """Tiles done / total, and the phase (base, tiles, pass N, done, failed)."""
        return dict(self._progress)

    async def run(self, job: LargeRenderJob) -> LargeRenderResult:
        """Render a hires or tiled job into the store; raise `JobFailed` with a reason."""
        return await self._guarded(job.job_id, self._render(job))

    async def upscale(self, job: UpscaleJob) -> LargeRenderResult:
        """Upscale an image (tiled, chained passes) into the store."""
        return await self._guarded(job.job_id, self._upscale(job))

    async def _guarded(self, job_id: str, work: Any) -> LargeRenderResult:
        self._progress.update(status="running", phase="starting")
        try:
            result = await work
        except JobFailed:
            self._progress.update(status="failed", phase="failed")
            raise
        except RenderClusterError as exc:
            self._progress.update(status="failed", phase="failed")
            raise JobFailed(job_id, str(exc)) from None
        self._progress.update(status="done", phase="done")
        return result

    def _spool(self, name: str) -> Path:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        return self.spool_dir / name

    def _commit(self, gathered: GatherResult, key: str) -> int:
        """Upload the finished file to the store; return its size."""
        try:
            size = gathered.path.stat().st_size
            self.store.put_file(key, gathered.path)
        finally:
            gathered.path.unlink(missing_ok=True)
        return size

    async def _render(self, job: LargeRenderJob) -> LargeRenderResult:
        started = time.perf_counter()
        handle = serve.get_deployment_handle(deployment_name(job.model_name), self.app_name)
        stats = CallStats()
        self._progress["phase"] = "base"
        base, base_dims = await self._base(job, handle, stats)
        base_s = time.perf_counter() - started
        plan = plan_tiles(job.width, job.height, job.tile_size, job.overlap, job.align)
        self._progress["phase"] = "tiles"

        async def render_tile(tile: Tile) -> np.ndarray:
            return await self._tile(job, handle, plan, tile, base, stats)

        gathered = await gather_to_file(
            plan,
            render_tile,
            self._spool(f"{job.job_id}.{job.format}"),
            job.format,
            job.dpi,
            job.max_in_flight,
            self._progress,
            job.blend,
            finish=None if job.text is None else self._text_pass(job, handle, stats),
        )
        size = self._commit(gathered, job.output_key)
        result = _result(
            job.job_id,
            job.output_key,
            size,
            job.format,
            plan,
            gathered,
            stats,
            base_dims,
            started,
            base_s=base_s,
        )
        result.typography = gathered.finished_with
        return result

    def _text_pass(
        self, job: LargeRenderJob, handle: Any, stats: CallStats
    ) -> Callable[[np.ndarray], Awaitable[TypographyReport]]:
        """Deliver the job's text into the finished canvas; integrated boxes on the replicas."""
        assert job.text is not None
        text = job.text

        async def render(request: GenerateRequest) -> np.ndarray:
            result = await call_with_retries(
                handle.render, request, "text", job.job_id, job.max_attempts, stats
            )
            return result.image

        request = _txt2img(job, job.width, job.height, job.seed)
        limit = MAX_CALL_AREA * job.native_resolution**2
        img2img = inpaint_pass(render, request, job.align, limit)
        return lambda canvas: deliver_text(canvas, text, img2img)

    async def _upscale(self, job: UpscaleJob) -> LargeRenderResult:
        started = time.perf_counter()
        handle = serve.get_deployment_handle(deployment_name(job.model_name), self.app_name)
        stats = CallStats()
        source: np.ndarray | pyvips.Image = job.image
        height, width = job.image.shape[:2]
        intermediate: Path | None = None
        for index in range(job.passes):
            last = index == job.passes - 1
            self._progress["phase"] = f"pass {index + 1}/{job.passes}"
            plan = plan_upscale(width, height, job.model_scale, job.tile_size, job.padding)

            async def upscale_tile(tile: Tile, source=source, plan=plan) -> np.ndarray:
                padded = plan.tiles[tile.index]
                request = UpscaleRequest(_cut(source, padded.box), padded.crop, tile.key)
                result = await call_with_retries(
                    handle.upscale, request, tile.key, job.job_id, job.max_attempts, stats
                )
                return result.image

            fmt = job.format if last else "tiff"
            target = self._spool(f"{job.job_id}.pass{index}.{fmt}")
            try:
                gathered = await gather_to_file(
                    plan.canvas,
                    upscale_tile,
                    target,
                    fmt,
                    job.dpi,
                    job.max_in_flight,
                    self._progress,
                )
            finally:
                if intermediate is not None:
                    intermediate.unlink(missing_ok=True)
            width, height = plan.canvas.width, plan.canvas.height
            if not last:
                intermediate = gathered.path
                source = pyvips.Image.new_from_file(str(intermediate), access="random")
        size = self._commit(gathered, job.output_key)
        return _result(
            job.job_id,
            job.output_key,
            size,
            job.format,
            plan.canvas,
            gathered,
            stats,
            None,
            started,
        )

    async def _base(
        self, job: LargeRenderJob, handle: Any, stats: CallStats
    ) -> tuple[Image.Image | None, tuple[int, int] | None]:
        """The base image for the hires path (rendered at native size or supplied)."""
        if job.mode == "tiled":
            return None, None
        if job.base_image is not None:
            image = job.base_image
        else:
            width, height = base_size(job.width, job.height, job.native_resolution, job.align)
            request = _txt2img(job, width, height, job.seed)
            result = await call_with_retries(
                handle.render, request, "base", job.job_id, job.max_attempts, stats
            )
            image = result.image
        return Image.fromarray(image), (image.shape[1], image.shape[0])

    async def _tile(
        self,
        job: LargeRenderJob,
        handle: Any,
        plan: TilePlan,
        tile: Tile,
        base: Image.Image | None,
        stats: CallStats,
    ) -> np.ndarray:
        reference = None if base is None else upscaled_crop(base, plan.width, plan.height, tile)
        pixels = await self._render_region(
            job, handle, tile, reference, tile_seed(job.seed, tile), tile.key, 0, stats
        )
        if reference is not None and job.colour_match:
            pixels = match_low_frequency(pixels, reference)
        return pixels

    async def _render_region(
        self,
        job: LargeRenderJob,
        handle: Any,
        tile: Tile,
        reference: np.ndarray | None,
        seed: int,
        name: str,
        depth: int,
        stats: CallStats,
    ) -> np.ndarray:
        """Render one tile (img2img of its reference, or txt2img); split it on OOM."""
        request = _txt2img(job, tile.render_w, tile.render_h, seed)
        if reference is not None:
            request.mode = "img2img"
            request.strength = job.strength
            request.init_image = pad_to_render_size(reference, tile)
        try:
            result = await call_with_retries(
                handle.render, request, name, job.job_id, job.max_attempts, stats
            )
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
        handle: Any,
        tile: Tile,
        reference: np.ndarray | None,
        seed: int,
        name: str,
        depth: int,
        stats: CallStats,
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


def _txt2img(job: LargeRenderJob, width: int, height: int, seed: int) -> GenerateRequest:
    return GenerateRequest(
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        width=width,
        height=height,
        steps=job.steps,
        guidance=job.guidance,
        seed=seed,
    )


def _cut(source: np.ndarray | pyvips.Image, box: Any) -> np.ndarray:
    """Pixels of a box of the source: an array, or a file libvips reads on demand."""
    if isinstance(source, np.ndarray):
        return np.ascontiguousarray(box.cut(source))
    return source.crop(box.x0, box.y0, box.width, box.height).numpy()


def _result(
    job_id: str,
    key: str,
    size: int,
    fmt: str,
    plan: TilePlan,
    gathered: GatherResult,
    stats: CallStats,
    base_dims: tuple[int, int] | None,
    started: float,
    base_s: float = 0.0,
) -> LargeRenderResult:
    return LargeRenderResult(
        job_id=job_id,
        output_key=key,
        output_bytes=size,
        width=plan.width,
        height=plan.height,
        format=fmt,
        tiles=len(plan.tiles),
        redundancy=plan.redundancy,
        seam_score=gathered.seam_score,
        replicas_used=stats.replicas_used(),
        max_concurrent_replicas=stats.max_concurrent_replicas(),
        retries=stats.retries,
        splits=stats.splits,
        base_size=base_dims,
        timings={
            "base_s": round(base_s, 3),
            "tiles_s": round(gathered.tiles_s, 3),
            "blend_s": round(gathered.blend_s, 3),
            "encode_and_store_s": round(gathered.encode_s, 3),
            "total_s": round(time.perf_counter() - started, 3),
        },
    )
