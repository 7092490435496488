"""Any size means any size: hires, tiled and upscale jobs off the latent grid come out
exactly as asked (tiles stay on the grid, spread evenly over the canvas)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from core.largeformat.tiling import plan_tiles
from core.largeformat.upscaling import UpscaleRequest, UpscaleResult
from core.schemas import UpscaleJob
from tests.unit.largeformat.test_runner import PureModel, _base, _decoded, _job, _runner


@pytest.mark.parametrize("mode", ["hires", "tiled"])
@pytest.mark.parametrize("size", [(301, 77), (150, 61), (63, 200)])
def test_a_large_render_off_the_grid_is_exactly_the_size_asked(tmp_path, mode, size):
    job = _job(mode=mode, width=size[0], height=size[1], base_image=None)
    runner = _runner(tmp_path)
    model = PureModel()
    result = asyncio.run(runner.render(job, model))
    assert _decoded(runner, job.output_key).shape == (size[1], size[0], 3)
    assert (result.width, result.height) == size
    plan = plan_tiles(*size, job.tile_size, job.overlap, job.align)
    rendered = set(model.calls)
    assert all(w % 8 == 0 and h % 8 == 0 for w, h in rendered), rendered
    assert result.tiles == len(plan.tiles)


def test_an_upscale_of_an_odd_sized_image_is_exactly_scale_times_it(tmp_path):
    source = _base(37, 23)

    async def nearest_x2(request: UpscaleRequest) -> UpscaleResult:
        image = request.image.repeat(2, axis=0).repeat(2, axis=1)
        if request.crop is not None:
            image = request.crop.cut(image)
        return UpscaleResult(np.ascontiguousarray(image), 0.001, "replica-u", ["0"])

    job = UpscaleJob(
        job_id="up-odd",
        model_name="upscaler",
        image=source,
        scale=4,
        model_scale=2,
        tile_size=16,
        padding=4,
        output_key="renders/up-odd/image.png",
    )
    runner = _runner(tmp_path)
    result = asyncio.run(runner.upscale(job, nearest_x2))
    assert (result.width, result.height) == (148, 92)
    expected = source.repeat(4, axis=0).repeat(4, axis=1)
    assert np.array_equal(_decoded(runner, job.output_key), expected)
