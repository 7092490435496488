"""A fused render, given the model's calls: one coherent image of any size from every
replica, step by step. No Ray.

1. A replica encodes the prompt once (`PromptRequest`); the conditioning is shared by
   reference (`FusedCalls.share`: `ray.put` in the router) and never re-sent.
2. The router holds the latent canvas (1/64 of the pixels, float32). The starting
   noise is drawn once for the whole canvas from the job seed
   (`core.largeformat.latent_sampler`); with a base image (img2img) the base is
   encoded tile by tile on the replicas and noised to the strength's timestep.
3. Every step: each tile's crop of the model input goes to a replica for one guided
   denoiser evaluation; the predictions are fused with per-pixel weights that sum to
   1 ('gaussian': Mixture of Diffusers, 'uniform': MultiDiffusion) in plan order; the
   scheduler steps the canvas. Steps do not wait for each other across the whole canvas
   (`core.largeformat.wavefront`): a band of the canvas steps as soon as the tiles over it
   have answered, and tiles go out for the next step as soon as the bands under them
   have stepped, with the values of one scheduler step of the whole canvas.
4. The replicas decode the finished latents in overlapping pixel tiles (each with a
   margin of latent context); the tiles are blended into row bands and streamed to the
   writer like every large render. The router never holds the decoded canvas.

Any size: the latent canvas covers the image (ceil(side / factor) cells); decoded
tiles are cut to the pixels asked for, so the output is exactly width x height.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from core.errors import JobFailed
from core.largeformat.fanout import OutputFile, gather_to_file
from core.largeformat.fused_schemas import (
    DecodeRequest,
    EncodeRequest,
    EncodeResult,
    FusedCalls,
    FusedSetup,
    PromptRequest,
)
from core.largeformat.fused_steps import fan_out, model_call
from core.largeformat.fusion_weights import Fuser, FusionWeights, latent_plan
from core.largeformat.hires import upscaled_crop
from core.largeformat.job_context import JobContext, JobOutput
from core.largeformat.latent_sampler import LatentSampler
from core.largeformat.refine import _text_pass
from core.largeformat.tiling import Tile, TilePlan, plan_tiles
from core.largeformat.wavefront import Wavefront
from core.schemas import LargeRenderJob, LargeRenderResult

__all__ = ["DECODE_CONTEXT", "decode_plan", "render_fused"]

DECODE_CONTEXT = 1 / 8
"""Latent context decoded around each decode tile (a fraction of the tile side), cut off.

The VAE's group norms and mid-block attention see the whole input, so no tiling decodes
exactly as the whole canvas would; on the tiny model at 768x256 in 256-px tiles the
mean difference is about 1.1 levels (1.3 with 1/16 context, 1.0 with 1/4)."""


def decode_plan(job: LargeRenderJob) -> TilePlan:
    """The pixel tiles the VAE decodes: `decode_tile` (default: the job's tile size) with a
    quarter of it overlapping."""
    side = job.decode_tile or job.tile_size
    overlap = max(job.align, side // 4 // job.align * job.align)
    return plan_tiles(job.width, job.height, side, overlap, job.align)


async def render_fused(
    job: LargeRenderJob, ctx: JobContext, calls: FusedCalls
) -> LargeRenderResult:
    """Render `job` (mode 'fused') into the store; raise `JobFailed` with a reason."""
    ctx.progress.phase = "prompt"
    prompt = PromptRequest(
        job.prompt, job.negative_prompt, job.guidance, job.tile_size, job.tile_size
    )
    setup: FusedSetup = await model_call(ctx, calls.encode_prompt, prompt, "prompt")
    if setup.latent_factor != job.align:
        raise JobFailed(
            job.job_id,
            f"the model's latent factor is {setup.latent_factor}, the config says {job.align}",
        )
    prompt_s = time.perf_counter() - ctx.started
    grid = latent_plan(job.width, job.height, job.tile_size, job.overlap, job.align)
    img2img = job.base_image is not None
    sampler = LatentSampler(setup.scheduler, job.steps, job.seed, job.strength if img2img else None)
    wave = Wavefront(ctx, job, calls, FusionWeights(grid, job.fuse), setup, sampler)
    ctx.progress.total += wave.calls_per_step * len(sampler.timesteps)
    shape = (1, setup.latent_channels, grid.height, grid.width)
    encode_started = time.perf_counter()
    init = await _encode_base(job, ctx, calls, grid, shape[1]) if img2img else None
    base_s = time.perf_counter() - encode_started  # encoding the base image (img2img)
    latents = sampler.start(shape, init)
    ctx.progress.phase = "denoise"
    latents = await wave.run(latents, calls.share(setup.conditioning))
    ctx.progress.phase = "decode"
    result = await _decode(job, ctx, calls, latents[0].numpy(), grid, base_s)
    result.timings.update(prompt_s=round(prompt_s, 3), **wave.timings())
    return result


async def _decode(
    job: LargeRenderJob,
    ctx: JobContext,
    calls: FusedCalls,
    latents: np.ndarray,
    grid: TilePlan,
    base_s: float,
) -> LargeRenderResult:
    """Decode `latents` (C, H, W) tile by tile into the job's file; the job's result."""
    plan = decode_plan(job)
    factor = job.align
    pad = max(1, round(plan.tile_w // factor * DECODE_CONTEXT))

    async def decode_tile(tile: Tile) -> np.ndarray:
        x0, y0 = max(0, tile.x // factor - pad), max(0, tile.y // factor - pad)
        x1 = min(latents.shape[2], -(-(tile.x + tile.w) // factor) + pad)
        y1 = min(latents.shape[1], -(-(tile.y + tile.h) // factor) + pad)
        crop = np.ascontiguousarray(latents[:, y0:y1, x0:x1])
        result = await model_call(ctx, calls.decode, DecodeRequest(crop), f"decode {tile.key}")
        top, left = tile.y - y0 * factor, tile.x - x0 * factor
        return result.image[top : top + tile.h, left : left + tile.w]

    gathered = await gather_to_file(
        plan,
        decode_tile,
        OutputFile(
            ctx.spool(f"{job.job_id}.{job.format}"), job.format, job.dpi, job.metadata, ctx.preview
        ),
        ctx.fanout(job, job.blend),
        ctx.progress,
        finish=None if job.text is None else _text_pass(job, ctx),
    )
    result = ctx.result(JobOutput(job.output_key, job.format, job.dpi), plan, gathered)
    result.typography = gathered.finished_with
    result.tiles, result.redundancy = len(grid.tiles), grid.redundancy
    result.base_size = None if job.base_image is None else job.base_image.shape[1::-1]
    result.timings.update(base_s=round(base_s, 3), decode_s=round(gathered.tiles_s, 3))
    return result


async def _encode_base(
    job: LargeRenderJob, ctx: JobContext, calls: FusedCalls, grid: TilePlan, channels: int
) -> np.ndarray:
    """The base image, stretched to the canvas, encoded tile by tile: latents (C, H, W).

    Encoder tiles overlap by a quarter and are blended with Gaussian weights.
    """
    ctx.progress.phase = "encode"
    factor = job.align
    side = grid.tile_w
    plan = plan_tiles(grid.width, grid.height, (grid.tile_w, grid.tile_h), max(1, side // 4), 1)
    fuser = Fuser(FusionWeights(plan, "gaussian"), channels)
    base = Image.fromarray(job.base_image)
    ctx.progress.total += len(plan.tiles)

    async def encode(tile: Tile) -> EncodeResult:
        pixels = _base_pixels(base, job.width, job.height, tile, factor)
        return await model_call(
            ctx, calls.encode_image, EncodeRequest(pixels), f"encode {tile.key}"
        )

    def take(tile: Tile, result: EncodeResult) -> None:
        fuser.add(tile, result.latents)
        ctx.progress.done += 1

    await fan_out(plan.tiles, encode, take, job.max_in_flight)
    return fuser.result()


def _base_pixels(
    base: Image.Image, width: int, height: int, cells: Tile, factor: int
) -> np.ndarray:
    """The base under a latent tile, Lanczos-stretched to width x height; edge-padded where
    the latent grid runs past the image (at most factor - 1 pixels)."""
    x, y, w, h = cells.x * factor, cells.y * factor, cells.w * factor, cells.h * factor
    inside_w, inside_h = min(w, width - x), min(h, height - y)
    box = Tile(0, 0, 0, x, y, inside_w, inside_h, inside_w, inside_h)
    pixels = upscaled_crop(base, width, height, box)
    return np.pad(pixels, ((0, h - inside_h), (0, w - inside_w), (0, 0)), mode="edge")
