"""The inputs of a hires job's refine tiles: its base upscaled by Lanczos or by a model. No Ray.

Lanczos: each tile's input is resampled straight from the small base
(`core.largeformat.hires.upscaled_crop`). Model: the base first goes through
the upscaler's tiled upscale across its replicas (`upscale_to_file`), in as many
passes as it takes to cover the target on both sides (at least one), and each
tile's input is the Lanczos resize of that canvas to exactly the target, cut
under the tile. So a x4 model on a base 2.8 times smaller than the target
overshoots and is resized down: every pixel comes from the model (Lanczos-
enlarging the remainder instead would blur what the model sharpened). Only the
first pass works on the base as it is; before a later last pass, the canvas is
resized down to a model scale's fraction of the target, so the last (largest)
pass makes just what the target needs, never up to scale² times as much. The
canvas is a spool file that libvips reads on demand, only the region under a
tile, never whole in memory.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyvips
from PIL import Image

from core.largeformat.fanout import GatherResult
from core.largeformat.hires import upscaled_crop
from core.largeformat.job_context import JobContext
from core.largeformat.tiling import Tile, TilePlan
from core.largeformat.upscale_job import upscale_to_file
from core.schemas import LargeRenderJob, UpscaleJob

__all__ = [
    "LANCZOS_SUPPORT",
    "Reference",
    "UpscaledBase",
    "passes_to_cover",
    "resized_crop",
    "tile_references",
]

Reference = Callable[[Tile], np.ndarray]
"""A refine tile's input: the upscaled base under it (uint8, h x w x 3)."""

LANCZOS_SUPPORT = 3
"""Pillow's Lanczos filter reaches 3 source pixels each side (times the downscale factor)."""


@dataclass(frozen=True)
class UpscaledBase:
    """A hires job's upscaled base: each refine tile's input (`crop`), and the seam score
    of the upscaled canvas, the only seams a render that keeps it unrefined can have (the
    upscaler's last pass measured on its own tiles; 1.0 for Lanczos, which has none)."""

    crop: Reference
    seam_score: float = 1.0


@asynccontextmanager
async def tile_references(
    job: LargeRenderJob, ctx: JobContext, base: np.ndarray | None, plan: TilePlan
) -> AsyncIterator[Reference | None]:
    """The refine tiles' inputs from `base` (None: a tiled job, no inputs), upscaled as
    `job.upscaler` says (None: Lanczos); a model-upscaled canvas's file is removed on exit."""
    if base is None:
        yield None
        return
    if job.upscaler is None:
        image = Image.fromarray(base)
        yield UpscaledBase(lambda tile: upscaled_crop(image, plan.width, plan.height, tile))
        return
    gathered = await upscale_base(job, ctx, base)
    try:
        canvas = pyvips.Image.new_from_file(str(gathered.path), access="random")
        crop = partial(resized_crop, canvas, plan.width, plan.height)
        yield UpscaledBase(crop, gathered.seam_score)
    finally:
        gathered.path.unlink(missing_ok=True)


async def upscale_base(job: LargeRenderJob, ctx: JobContext, base: np.ndarray) -> GatherResult:
    """Upscale `base` by the job's upscaler model to cover the target; return the gathered
    spool file (TIFF) of the upscaled canvas."""
    upscaler = job.upscaler
    assert upscaler is not None
    height, width = base.shape[:2]
    passes = passes_to_cover((width, height), (job.width, job.height), upscaler.scale)
    covering = (math.ceil(job.width / upscaler.scale), math.ceil(job.height / upscaler.scale))
    spec = UpscaleJob(
        job_id=job.job_id,
        model_name=upscaler.model_name,
        image=base,
        scale=upscaler.scale**passes,
        model_scale=upscaler.scale,
        tile_size=upscaler.tile_size,
        padding=upscaler.padding,
        output_key=job.output_key,
        max_in_flight=job.max_in_flight,
        max_attempts=job.max_attempts,
        replica_requests=upscaler.replica_requests,
        last_pass_source=covering if passes > 1 else None,
    )
    _, gathered = await upscale_to_file(spec, ctx.upscaling(), "tiff", None)
    return gathered


def passes_to_cover(size: tuple[int, int], target: tuple[int, int], scale: int) -> int:
    """Passes of a x`scale` model (at least one) after which `size` covers `target`."""
    passes, (width, height) = 1, (size[0] * scale, size[1] * scale)
    while width < target[0] or height < target[1]:
        passes, width, height = passes + 1, width * scale, height * scale
    return passes


def resized_crop(canvas: pyvips.Image, width: int, height: int, tile: Tile) -> np.ndarray:
    """Pixels of `tile` from `canvas` Lanczos-resized to width x height (uint8, h x w x 3),
    reading only the canvas under the tile and the filter's reach around it."""
    sx, sy = canvas.width / width, canvas.height / height
    box = (tile.x * sx, tile.y * sy, (tile.x + tile.w) * sx, (tile.y + tile.h) * sy)
    reach = math.ceil(LANCZOS_SUPPORT * max(sx, sy, 1.0)) + 2
    x0, y0 = max(math.floor(box[0]) - reach, 0), max(math.floor(box[1]) - reach, 0)
    x1 = min(math.ceil(box[2]) + reach, canvas.width)
    y1 = min(math.ceil(box[3]) + reach, canvas.height)
    region = Image.fromarray(canvas.crop(x0, y0, x1 - x0, y1 - y0).numpy())
    shifted = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    return np.asarray(region.resize((tile.w, tile.h), Image.Resampling.LANCZOS, box=shifted))
