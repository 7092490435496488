"""A hires job whose base goes through an upscaler model before the tiled refine. No Ray.

The models are plain functions: the upscaler repeats pixels (nearest, x2) and the
refine returns its init image, so the output is the model-upscaled base resized to
the target, and differs from the Lanczos path's.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import pyvips
from PIL import Image

from core import telemetry
from core.errors import JobFailed, ReplicaUnavailable
from core.largeformat.hires import upscaled_crop
from core.largeformat.hires_upscale import passes_to_cover, resized_crop
from core.largeformat.job_context import UpscalerCall
from core.largeformat.seams import seam_score
from core.largeformat.tiling import plan_tiles
from core.largeformat.upscaling import UpscaleRequest, UpscaleResult, plan_upscale
from core.schemas import GenerateRequest, GenerateResult, HiresUpscaler, UpscaleJob
from tests.unit.largeformat.test_runner import (
    FailingTiles,
    PureModel,
    _base,
    _decoded,
    _job,
    _runner,
)
from tests.unit.test_telemetry import Recorder


@pytest.mark.parametrize(
    ("size", "target", "scale", "passes"),
    [
        ((64, 32), (256, 128), 4, 1),  # exactly covered
        ((64, 32), (200, 100), 4, 1),  # overshoot, resized down
        ((64, 32), (257, 128), 4, 2),  # one pixel short on one side
        ((64, 32), (1024, 512), 2, 4),
        ((300, 100), (256, 128), 2, 1),  # a supplied base over the target: one pass all the same
    ],
)
def test_passes_cover_the_target_on_both_sides(size, target, scale, passes):
    assert passes_to_cover(size, target, scale) == passes


def _vips(array: np.ndarray) -> pyvips.Image:
    height, width, bands = array.shape
    return pyvips.Image.new_from_memory(array.tobytes(), width, height, bands, "uchar")


@pytest.mark.parametrize("canvas_size", [(256, 128), (400, 190), (777, 333)])
def test_a_tiles_crop_reads_its_region_and_matches_resizing_the_whole_canvas(canvas_size):
    canvas = np.random.default_rng(5).integers(0, 256, (*canvas_size[::-1], 3), dtype=np.uint8)
    whole = np.asarray(Image.fromarray(canvas).resize((200, 100), Image.Resampling.LANCZOS))
    for tile in plan_tiles(200, 100, 64, 8, 8).tiles:
        crop = resized_crop(_vips(canvas), 200, 100, tile)
        expected = whole[tile.y : tile.y + tile.h, tile.x : tile.x + tile.w]
        assert crop.shape == expected.shape
        assert np.abs(crop.astype(int) - expected).max() <= 1  # float rounding of the box


class NearestUpscaler:
    """Repeats every pixel `scale` times each way; counts its calls."""

    def __init__(self, scale: int = 2):
        self.scale = scale
        self.calls = 0

    async def __call__(self, request: UpscaleRequest) -> UpscaleResult:
        self.calls += 1
        await asyncio.sleep(0)
        image = request.image.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
        if request.crop is not None:
            image = request.crop.cut(image)
        return UpscaleResult(np.ascontiguousarray(image), 0.001, "replica-u", ["0"])


UPSCALER = HiresUpscaler("esrgan", scale=2, tile_size=16, padding=4)


def _run(tmp_path, job, upscaler: NearestUpscaler | None = None):
    runner = _runner(tmp_path)
    reach = None if upscaler is None else UpscalerCall(upscaler)
    result = asyncio.run(runner.render(job, PureModel(), upscaler=reach))
    return runner, result


def test_the_lanczos_path_refines_the_lanczos_crops_of_the_base(tmp_path):
    job = _job()
    runner, result = _run(tmp_path, job)
    base = Image.fromarray(_base())
    plan = plan_tiles(256, 128, 64, None, 8)
    image = _decoded(runner, job.output_key)
    tile = plan.tiles[0]  # no neighbour blends into its top-left corner
    corner = image[: tile.h // 2, : tile.w // 2]
    assert np.array_equal(corner, upscaled_crop(base, 256, 128, tile)[: tile.h // 2, : tile.w // 2])
    assert "upscale_s" not in result.timings


def test_a_model_upscaled_base_is_refined_instead_and_its_spool_file_removed(tmp_path):
    base = _base()  # 64 x 32; x2 twice covers 256 x 128 exactly
    lanczos_runner, _ = _run(tmp_path / "lanczos", _job())
    upscaler = NearestUpscaler()
    job = _job(upscaler=UPSCALER)
    runner, result = _run(tmp_path / "model", job, upscaler)
    image = _decoded(runner, job.output_key)
    nearest = base.repeat(4, axis=0).repeat(4, axis=1)  # exactly the target: no resize
    assert image.shape == (128, 256, 3)
    corner = plan_tiles(256, 128, 64, None, 8).tiles[0].w // 2
    assert np.array_equal(image[:corner, :corner], nearest[:corner, :corner])
    assert not np.array_equal(image, _decoded(lanczos_runner, job.output_key))
    sources = plan_tiles(64, 32, 16, None, 1).tiles + plan_tiles(128, 64, 16, None, 1).tiles
    assert upscaler.calls == len(sources)  # two passes of tiles, each tile once
    assert result.tiles == len(plan_tiles(256, 128, 64, None, 8).tiles)
    assert result.base_size == (64, 32) and result.timings["upscale_s"] >= 0
    assert not list((tmp_path / "model" / "spool").iterdir())  # canvases gone
    assert runner.progress.done == runner.progress.total == upscaler.calls + result.tiles


class FlakyUpscaler(NearestUpscaler):
    """Its first call finds its replica gone (sent again); the others run on "replica-u"."""

    async def __call__(self, request: UpscaleRequest) -> UpscaleResult:
        if self.calls == 0:
            self.calls += 1
            raise ReplicaUnavailable("esrgan", "the replica died")
        return await super().__call__(request)


def test_the_upscaler_models_calls_are_counted_apart_from_the_tile_models(tmp_path):
    recorder = Recorder()
    telemetry.use_backend(recorder)
    try:
        upscaler = FlakyUpscaler()
        _, result = _run(tmp_path / "model", _job(upscaler=UPSCALER), upscaler)
        _, lanczos = _run(tmp_path / "lanczos", _job())
    finally:
        telemetry.use_backend(None)
    assert result.replicas_used == ["replica-a"] and result.retries == 0  # the tiles' model
    metrics = result.metrics()
    assert (metrics["replicas_used"], metrics["retries"]) == (1, 0)
    calls = len(plan_tiles(64, 32, 16, None, 1).tiles + plan_tiles(128, 64, 16, None, 1).tiles)
    assert (metrics["upscaler_calls"], metrics["upscaler_retries"]) == (calls, 1)
    assert (metrics["upscaler_replicas_used"], metrics["upscaler_overload_waits"]) == (1, 0)
    assert recorder.total("rendercluster_tile_retries_total", model="esrgan") == 1
    assert recorder.total("rendercluster_tile_retries_total", model="quality") == 0
    assert lanczos.upscaler_calls is None and "upscaler_calls" not in lanczos.metrics()


def test_a_model_upscale_that_overshoots_is_resized_to_the_exact_target(tmp_path):
    job = _job(width=200, height=100, upscaler=HiresUpscaler("esrgan", 4, 16, 4))
    runner, result = _run(tmp_path, job, NearestUpscaler(4))  # 64 x 32 -> 256 x 128
    image = _decoded(runner, job.output_key)
    assert image.shape == (100, 200, 3) and (result.width, result.height) == (200, 100)
    nearest = _base().repeat(4, axis=0).repeat(4, axis=1)
    whole = np.asarray(Image.fromarray(nearest).resize((200, 100), Image.Resampling.LANCZOS))
    assert np.abs(image[:20, :20].astype(int) - whole[:20, :20]).max() <= 1


class SeamyUpscaler(NearestUpscaler):
    """Nearest, with every other tile darkened: the upscaled canvas has hard seams."""

    async def __call__(self, request: UpscaleRequest) -> UpscaleResult:
        result = await super().__call__(request)
        if self.calls % 2:
            result.image = (result.image * 0.6).astype(np.uint8)
        return result


def test_an_unrefined_hires_scores_the_seams_of_its_upscaled_canvas_not_its_tile_plan(tmp_path):
    plan = plan_tiles(256, 128, 64, None, 8)
    job = _job(strength=0.0)  # Lanczos: the output is one resize, with no seam anywhere
    runner, result = _run(tmp_path / "lanczos", job)
    image = _decoded(runner, job.output_key)
    assert seam_score(image, plan) != 1.0  # what its tile plan's lines happen to show
    assert result.seam_score == 1.0 and result.tiles == len(plan.tiles)

    job = _job(strength=0.0, upscaler=UPSCALER)
    _, nearest = _run(tmp_path / "nearest", job, NearestUpscaler())
    last_pass = plan_upscale(128, 64, 2, 16, 4).canvas  # 64 x 32 -> 128 x 64 -> 256 x 128
    upscaled = _base().repeat(4, axis=0).repeat(4, axis=1)
    assert nearest.seam_score == pytest.approx(seam_score(upscaled, last_pass), rel=1e-6)

    flat = np.full((32, 64, 3), 120, np.uint8)
    job = _job(strength=0.0, upscaler=UPSCALER, base_image=flat)
    _, seamless = _run(tmp_path / "flat", job, NearestUpscaler())
    _, seamy = _run(tmp_path / "seamy", job, SeamyUpscaler())
    assert seamless.seam_score == 1.0 and seamy.seam_score > 1.5


def test_an_unrefined_hires_counts_its_tiles_as_cut_not_rendered(tmp_path):
    recorder = Recorder()
    telemetry.use_backend(recorder)
    try:
        _, cut = _run(tmp_path / "cut", _job(strength=0.0))
        _, refined = _run(tmp_path / "refined", _job(strength=0.3))
    finally:
        telemetry.use_backend(None)
    plan = plan_tiles(256, 128, 64, None, 8)
    assert cut.tiles == refined.tiles == len(plan.tiles)
    cut_metrics, refined_metrics = cut.metrics(), refined.metrics()
    assert (cut_metrics["tiles_cut"], cut_metrics["tiles_rendered"]) == (len(plan.tiles), 0)
    assert (refined_metrics["tiles_cut"], refined_metrics["tiles_rendered"]) == (0, len(plan.tiles))
    counted = [value for name, value, _ in recorder.seen if name == "rendercluster_tiles_total"]
    assert counted == [len(plan.tiles)]  # a count of 0 records nothing


def test_a_later_last_pass_starts_from_the_canvas_resized_to_just_cover_the_target(tmp_path):
    job = _job(width=520, height=260, tile_size=128, upscaler=HiresUpscaler("esrgan", 4, 16, 4))
    upscaler = NearestUpscaler(4)  # 64 x 32 -> 256 x 128 (short of 520 x 260) -> one more pass
    runner, result = _run(tmp_path, job, upscaler)
    first = plan_upscale(64, 32, 4, 16, 4)
    last = plan_upscale(130, 65, 4, 16, 4)  # 256 x 128 resized to 520 / 4 x 260 / 4 first
    assert (last.canvas.width, last.canvas.height) == (520, 260)  # not 1024 x 512
    assert upscaler.calls == len(first.tiles) + len(last.tiles)
    assert upscaler.calls < len(first.tiles) + len(plan_upscale(256, 128, 4, 16, 4).tiles) / 3
    image = _decoded(runner, job.output_key)
    assert image.shape == (260, 520, 3) and result.base_size == (64, 32)
    canvas = _vips(_base().repeat(4, axis=0).repeat(4, axis=1))
    resized = canvas.resize(130 / 256, vscale=65 / 128, kernel="lanczos3").numpy()
    expected = resized.repeat(4, axis=0).repeat(4, axis=1)  # the refine keeps its input here
    assert np.abs(image.astype(int) - expected).max() <= 1


def test_a_resumed_hires_counts_only_its_own_tiles_as_reused_not_the_base_or_upscale(tmp_path):
    job = _job(base_image=None, checkpoint=True, upscaler=UPSCALER)
    failing = SlowToFail(job, {"r0c1": [ValueError("the replica broke")]})
    first = UpscalerCall(NearestUpscaler())
    with pytest.raises(JobFailed, match="the replica broke"):
        asyncio.run(_runner(tmp_path).render(job, failing, upscaler=first))
    model, upscaler = PureModel(), NearestUpscaler()
    result = asyncio.run(_runner(tmp_path).render(job, model, upscaler=UpscalerCall(upscaler)))
    assert upscaler.calls == 0  # the base and both passes' tiles came from the checkpoints
    assert (result.tiles_reused, result.tiles_rendered) == (result.tiles - 1, 1)  # r0c1 alone
    assert sum(model.calls.values()) == 1


class SlowToFail(FailingTiles):
    """Fails its tiles after the others are done (all in flight at once, 2 ms each)."""

    async def __call__(self, request: GenerateRequest) -> GenerateResult:
        if self.by_seed.get(request.seed):
            await asyncio.sleep(0.3)
        return await super().__call__(request)


def test_a_resumed_upscale_counts_only_its_last_passs_tiles_as_reused(tmp_path):
    job = UpscaleJob(
        job_id="up-1",
        model_name="esrgan",
        image=_base(),
        scale=4,
        model_scale=2,
        tile_size=16,
        padding=4,
        output_key="renders/up-1/image.png",
        checkpoint=True,
    )
    first_pass = len(plan_upscale(64, 32, 2, 16, 4).tiles)

    class BreaksInTheLastPass(NearestUpscaler):
        async def __call__(self, request: UpscaleRequest) -> UpscaleResult:
            if self.calls == first_pass:  # the last pass's first tile, once the others are done
                self.calls += 1
                await asyncio.sleep(0.3)
                raise ValueError("the replica broke")
            return await super().__call__(request)

    with pytest.raises(JobFailed, match="the replica broke"):
        asyncio.run(_runner(tmp_path).upscale(job, BreaksInTheLastPass()))
    again = NearestUpscaler()
    result = asyncio.run(_runner(tmp_path).upscale(job, again))
    assert result.tiles == len(plan_upscale(128, 64, 2, 16, 4).tiles)
    assert (result.tiles_reused, result.tiles_rendered) == (result.tiles - 1, 1)  # not pass 1's
    assert again.calls == 1
