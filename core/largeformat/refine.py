"""A hires or tiled large-format render, given a model call. No Ray.

Hires: the base image (rendered at the model's native size, or supplied) is
upscaled (Lanczos tile by tile, or by an upscaler model first: see
`core.largeformat.hires_upscale`) and every tile refined by img2img,
colour-matched to the upscaled base under it. A hires job of strength 0 refines
nothing: its tiles are cuts of the upscaled canvas, so its seam score is that
canvas's (the upscaler's own tiles; none for Lanczos), not its tile plan's.
Tiled: every tile is drawn by txt2img from its own seed. Tiles that run out of
memory are split into 2x2 overlapping sub-tiles (up to `MAX_SPLIT_DEPTH` times)
and blended back. The job's text boxes are delivered into the finished canvas
before it is encoded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

import numpy as np

from core.errors import JobFailed, TileOutOfMemory
from core.largeformat.assembler import RowAssembler
from core.largeformat.colour import match_low_frequency
from core.largeformat.fanout import Finish, OutputFile, abandon, gather_to_file
from core.largeformat.hires import base_size, crop_to_tile, pad_to_render_size
from core.largeformat.hires_upscale import UpscaledBase, tile_references
from core.largeformat.job_context import JobContext, JobOutput
from core.largeformat.tiling import Tile, TilePlan, plan_tiles, tile_seed
from core.schemas import GenerateRequest, LargeRenderJob, LargeRenderResult
from core.typography.delivery import deliver_text, inpaint_pass

__all__ = ["MAX_SPLIT_DEPTH", "Region", "draw_base", "render_large", "split_plan"]

MAX_SPLIT_DEPTH = 2


@dataclass(frozen=True)
class Region:
    """A part of the canvas to render in one call: a tile or a sub-tile of a split."""

    tile: Tile
    seed: int
    name: str
    reference: np.ndarray | None = None  # the upscaled base under it (hires)
    depth: int = 0  # how many splits led here


async def render_large(job: LargeRenderJob, ctx: JobContext) -> LargeRenderResult:
    """Render `job` into the store through `ctx`'s model call; raise `JobFailed` with a reason."""
    ctx.progress.phase = "base"
    base = await _base(job, ctx)
    base_s = time.perf_counter() - ctx.started
    plan = plan_tiles(job.width, job.height, job.tile_size, job.overlap, job.align)
    async with tile_references(job, ctx, base, plan) as upscaled:
        upscale_s = time.perf_counter() - ctx.started - base_s
        ctx.progress.phase = "tiles"

        async def render_tile(tile: Tile) -> np.ndarray:
            return await _tile(job, ctx, tile, upscaled)

        spool = ctx.spool(f"{job.job_id}.{job.format}")
        gathered = await gather_to_file(
            plan,
            render_tile,
            OutputFile(spool, job.format, job.dpi, job.metadata, ctx.preview),
            ctx.fanout(job, job.blend),
            ctx.progress,
            finish=None if job.text is None else _text_pass(job, ctx),
        )
        refined = upscaled is None or job.strength > 0
        if not refined:
            gathered.seam_score = upscaled.seam_score  # the tiles only cut the upscaled canvas
    output = JobOutput(job.output_key, job.format, job.dpi)
    base_dims = None if base is None else (base.shape[1], base.shape[0])
    result = ctx.result(output, plan, gathered, base_dims, base_s)
    if not refined:
        result.tiles_cut = result.tiles  # cut afresh on every attempt, never checkpointed
    if job.upscaler is not None and base is not None:
        result.timings["upscale_s"] = round(upscale_s, 3)
    result.typography = gathered.finished_with
    return result


def txt2img(job: LargeRenderJob, width: int, height: int, seed: int) -> GenerateRequest:
    """A txt2img call of the job's prompt and settings at one size and seed."""
    return GenerateRequest(
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        width=width,
        height=height,
        steps=job.steps,
        guidance=job.guidance,
        seed=seed,
        scheduler=job.scheduler,
        loras=job.loras,
    )


async def _base(job: LargeRenderJob, ctx: JobContext) -> np.ndarray | None:
    """The base image for the hires path (rendered at native size or supplied)."""
    if job.mode == "tiled":
        return None
    return job.base_image if job.base_image is not None else await draw_base(job, ctx)


async def draw_base(job: LargeRenderJob, ctx: JobContext) -> np.ndarray:
    """The base image: the target's aspect ratio at about the drawing model's native area,
    drawn by the job's model or by the hosted `base_model_name` (its call kept in
    `ctx.base_provider`), and checkpointed, so a resumed job neither redraws nor re-pays it."""
    side = job.base_resolution or job.native_resolution
    width, height = base_size(job.width, job.height, side, job.align)
    request = txt2img(job, width, height, job.seed)
    hosted = job.base_model_name is not None
    pieces = ctx.checkpoints

    async def render() -> np.ndarray:
        result = await ctx.call_model(request, "base", ctx.base_call if hosted else None)
        ctx.base_provider = result.provider
        if pieces is not None and result.provider is not None:
            await asyncio.to_thread(pieces.save_note, "base", result.provider)
        return result.image

    image = await ctx.piece("base", render, tile=False)
    if hosted and ctx.base_provider is None and pieces is not None:
        ctx.base_provider = await asyncio.to_thread(pieces.load_note, "base")
    return image


async def _tile(
    job: LargeRenderJob, ctx: JobContext, tile: Tile, upscaled: UpscaledBase | None
) -> np.ndarray:
    if upscaled is not None and job.strength == 0:
        return upscaled.crop(tile)  # no refine: the upscaled base, nothing worth a checkpoint

    async def render() -> np.ndarray:
        reference = None if upscaled is None else upscaled.crop(tile)
        region = Region(tile, tile_seed(job.seed, tile), tile.key, reference)
        pixels = await render_region(job, ctx, region)
        if reference is not None and job.colour_match:
            pixels = match_low_frequency(pixels, reference)
        return pixels

    return await ctx.piece(tile.key, render)


async def render_region(job: LargeRenderJob, ctx: JobContext, region: Region) -> np.ndarray:
    """Render one region (img2img of its reference, or txt2img); split it on OOM."""
    tile = region.tile
    request = txt2img(job, tile.render_w, tile.render_h, region.seed)
    if region.reference is not None:
        request.mode = "img2img"
        request.strength = job.strength
        request.init_image = pad_to_render_size(region.reference, tile)
    try:
        result = await ctx.call_model(request, region.name)
    except TileOutOfMemory as exc:
        if region.depth >= MAX_SPLIT_DEPTH or min(tile.w, tile.h) < 4 * job.align:
            raise JobFailed(
                job.job_id, f"tile {region.name} ran out of memory: {exc.reason}"
            ) from None
        ctx.stats.splits += 1
        return await _split(job, ctx, region)
    return crop_to_tile(result.image, tile)


def split_plan(tile: Tile, align: int) -> TilePlan:
    """The 2x2 overlapping sub-tiles a tile is rendered as after running out of memory.

    The overlap is about an eighth of the tile, on the grid; each sub-tile is half
    the tile plus half the overlap, rounded up to the grid, so two cover each side.
    """
    overlap = max(align, min(tile.w, tile.h) // 8 // align * align)

    def half(side: int) -> int:
        return min(side, max(align, -(-(side + overlap) // (2 * align)) * align))

    return plan_tiles(tile.w, tile.h, (half(tile.w), half(tile.h)), overlap, align)


async def _split(job: LargeRenderJob, ctx: JobContext, region: Region) -> np.ndarray:
    """Render a region as 2x2 overlapping sub-tiles and blend them back together."""
    tile = region.tile
    sub_plan = split_plan(tile, job.align)

    async def render(sub: Tile) -> tuple[Tile, np.ndarray]:
        reference = region.reference
        if reference is not None:
            reference = reference[sub.y : sub.y + sub.h, sub.x : sub.x + sub.w]
        sub_region = replace(
            region,
            tile=sub,
            seed=tile_seed(region.seed, sub),
            name=f"{region.name}/{sub.key}",
            reference=reference,
            depth=region.depth + 1,
        )
        return sub, await render_region(job, ctx, sub_region)

    assembler = RowAssembler(sub_plan, blend=job.blend)
    out = np.empty((tile.h, tile.w, 3), np.uint8)
    tasks = [asyncio.create_task(render(sub)) for sub in sub_plan.tiles]
    try:
        rendered = await asyncio.gather(*tasks)
    except BaseException:
        abandon(tasks)
        raise
    for sub, pixels in rendered:
        for y0, band in assembler.add(sub, pixels):
            out[y0 : y0 + len(band)] = band
    return out


def _text_pass(job: LargeRenderJob, ctx: JobContext) -> Finish:
    """Deliver the job's text into the finished canvas; integrated boxes on the replicas."""
    assert job.text is not None
    text = job.text

    async def render(request: GenerateRequest) -> np.ndarray:
        return (await ctx.call_model(request, "text")).image

    request = txt2img(job, job.width, job.height, job.seed)
    img2img = inpaint_pass(render, request, job.align, job.max_call_pixels)
    return lambda canvas: deliver_text(canvas, text, img2img)
