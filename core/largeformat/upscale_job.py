"""A tiled upscale with chained passes, given a model call. No Ray.

Each pass sends padded source tiles to the upscaler and blends the upscaled
tiles into the next canvas; a pass's canvas is a spool file that the next pass
reads on demand (libvips), never whole in memory. A hires job with an upscaler
model runs the same passes on its base (`upscale_to_file`) and reads its refine
tiles' inputs from the last pass's file; its last pass may start from the canvas
resized first (`last_pass_source`), so that its output just covers the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from core.image_metadata import ImageMetadata
from core.largeformat.fanout import GatherResult, OutputFile, gather_to_file
from core.largeformat.job_context import JobContext, JobOutput
from core.largeformat.tiling import Tile, TilePlan
from core.largeformat.upscaling import UpscalePlan, UpscaleRequest, plan_upscale
from core.schemas import LargeRenderResult, UpscaleJob

__all__ = ["upscale_image", "upscale_to_file"]

Source = np.ndarray | pyvips.Image


async def upscale_image(job: UpscaleJob, ctx: JobContext) -> LargeRenderResult:
    """Upscale `job.image` by `job.scale` into the store, `job.passes` passes of the model."""
    canvas, gathered = await upscale_to_file(job, ctx, job.format, job.metadata)
    return ctx.result(JobOutput(job.output_key, job.format, job.dpi), canvas, gathered)


async def upscale_to_file(
    job: UpscaleJob, ctx: JobContext, fmt: str, tags: ImageMetadata | None
) -> tuple[TilePlan, GatherResult]:
    """Upscale `job.image` by `job.scale` into a spool file (the last pass's canvas, as
    `fmt` carrying `tags`); return the canvas's plan and the gathered file."""
    source: Source = job.image
    height, width = job.image.shape[:2]
    intermediate: Path | None = None
    for index in range(job.passes):
        last = index == job.passes - 1
        ctx.progress.phase = f"pass {index + 1}/{job.passes}"
        if last and isinstance(source, pyvips.Image) and job.last_pass_source is not None:
            source = _resized(source, *job.last_pass_source)
            width, height = source.width, source.height
        plan = plan_upscale(width, height, job.model_scale, job.tile_size, job.padding)
        pass_fmt = fmt if last else "tiff"
        spool = ctx.spool(f"{job.job_id}.pass{index}-{width}x{height}.{pass_fmt}")
        output = OutputFile(spool, pass_fmt, job.dpi, tags if last else None, ctx.preview)
        try:
            gathered = await _upscale_pass(job, ctx, plan, source, output, last)
        finally:
            if intermediate is not None:
                intermediate.unlink(missing_ok=True)
        width, height = plan.canvas.width, plan.canvas.height
        if not last:
            intermediate = gathered.path
            source = pyvips.Image.new_from_file(str(intermediate), access="random")
    return plan.canvas, gathered


async def _upscale_pass(
    job: UpscaleJob,
    ctx: JobContext,
    plan: UpscalePlan,
    source: Source,
    output: OutputFile,
    last: bool,
) -> GatherResult:
    async def upscale_tile(tile: Tile) -> np.ndarray:
        async def render() -> np.ndarray:
            padded = plan.tiles[tile.index]
            request = UpscaleRequest(_cut(source, padded.box), padded.crop, tile.key)
            return (await ctx.call_model(request, tile.key)).image

        return await ctx.piece(f"{output.path.stem}-{tile.key}", render, tile=last)

    return await gather_to_file(plan.canvas, upscale_tile, output, ctx.fanout(job), ctx.progress)


def _cut(source: Source, box: Any) -> np.ndarray:
    """Pixels of a box of the source: an array, or a file libvips reads on demand."""
    if isinstance(source, np.ndarray):
        return np.ascontiguousarray(box.cut(source))
    return source.crop(box.x0, box.y0, box.width, box.height).numpy()


def _resized(source: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """`source` Lanczos-resized to exactly width x height (computed on demand)."""
    if (source.width, source.height) == (width, height):
        return source
    scaled = source.resize(width / source.width, vscale=height / source.height, kernel="lanczos3")
    return scaled.gravity("north-west", width, height, extend="copy")  # a rounded-off pixel
