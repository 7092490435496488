"""The tile router's job logic without Ray: retries, OOM splits, bounded fan-out, progress.

The model is a plain async function. For the refine path it is a pure function of
its input (img2img returns its init image), so a split tile must give exactly the
bytes of the unsplit one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import StorageConfig
from core.errors import JobFailed, OverloadedError, ReplicaUnavailable, TileOutOfMemory
from core.image_metadata import ImageMetadata
from core.largeformat import fanout
from core.largeformat.fanout import RetryPolicy, rows_ahead
from core.largeformat.hires import base_size
from core.largeformat.refine import split_plan
from core.largeformat.runner import TileJobRunner
from core.largeformat.tiling import plan_tiles, tile_seed
from core.largeformat.upscaling import UpscaleRequest, UpscaleResult
from core.schemas import GenerateRequest, GenerateResult, LargeRenderJob, UpscaleJob
from core.store import open_store
from tests.unit.test_image_metadata import read_metadata


async def _no_sleep(_: float) -> None:
    return None


def _runner(tmp_path: Path) -> TileJobRunner:
    store = open_store(StorageConfig(kind="local", path=tmp_path / "store"))
    return TileJobRunner(store, tmp_path / "spool", RetryPolicy(sleep=_no_sleep))


def _base(width: int = 64, height: int = 32) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _job(**overrides) -> LargeRenderJob:
    fields = dict(
        job_id="job-1",
        model_name="quality",
        prompt="a harbour",
        width=256,
        height=128,
        steps=2,
        guidance=3.0,
        seed=11,
        tile_size=64,
        native_resolution=64,
        align=8,
        output_key="renders/job-1/image.png",
        base_image=_base(),
        colour_match=False,
    )
    return LargeRenderJob(**(fields | overrides))


class PureModel:
    """img2img returns its init image; txt2img a flat colour from the seed.

    `oom_over` makes calls over that many pixels run out of memory.
    """

    def __init__(self, oom_over: int | None = None):
        self.oom_over = oom_over
        self.calls: Counter[tuple[int, int]] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, request: GenerateRequest) -> GenerateResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.002)
            return self._render(request)
        finally:
            self.in_flight -= 1

    def _render(self, request: GenerateRequest) -> GenerateResult:
        self.calls[(request.width, request.height)] += 1
        if self.oom_over is not None and request.width * request.height > self.oom_over:
            raise TileOutOfMemory(f"{request.width}x{request.height}", "CUDA out of memory")
        if request.init_image is not None:
            image = request.init_image.copy()
        else:
            colour = np.array([request.seed % 251, request.seed % 241, request.seed % 239])
            image = np.broadcast_to(colour.astype(np.uint8), (request.height, request.width, 3))
        return GenerateResult(np.array(image), request.seed, 0.001, 1, "replica-a", ["0"])


class FailingTiles(PureModel):
    """Fails the calls of named tiles (the prompt cannot tell tiles apart, the seed can)."""

    def __init__(self, job: LargeRenderJob, failures: dict[str, list[Exception]], **kwargs):
        super().__init__(**kwargs)
        plan = plan_tiles(job.width, job.height, job.tile_size, job.overlap, job.align)
        self.by_seed = {
            tile_seed(job.seed, tile): list(failures.get(tile.key, [])) for tile in plan.tiles
        }

    def _render(self, request: GenerateRequest) -> GenerateResult:
        errors = self.by_seed.get(request.seed, [])
        if errors:
            raise errors.pop(0)
        return super()._render(request)


def _decoded(runner: TileJobRunner, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(runner.store.get_bytes(key))).convert("RGB"))


def _render(tmp_path: Path, job: LargeRenderJob, model) -> tuple[TileJobRunner, object]:
    runner = _runner(tmp_path)
    result = asyncio.run(runner.render(job, model))
    return runner, result


def test_a_hires_job_blends_every_tile_into_the_store(tmp_path):
    job = _job()
    runner, result = _render(tmp_path, job, PureModel())
    image = _decoded(runner, job.output_key)
    assert image.shape == (128, 256, 3)
    assert result.tiles == len(plan_tiles(256, 128, 64, None, 8).tiles)
    assert (result.retries, result.splits) == (0, 0)
    assert runner.progress.as_dict() == {
        "status": "done",
        "phase": "done",
        "done": result.tiles,
        "total": result.tiles,
    }
    assert not list((tmp_path / "spool").iterdir())  # the spool file went to the store


def test_dead_replicas_and_full_queues_are_retried_with_the_same_bytes(tmp_path):
    job = _job()
    clean, _ = _render(tmp_path / "clean", job, PureModel())
    failures = {
        "r0c1": [ReplicaUnavailable("quality", "ActorDiedError")],
        "r1c2": [OverloadedError("quality")],
    }
    runner, result = _render(tmp_path / "flaky", job, FailingTiles(job, failures))
    assert result.retries == 1  # the full queue was waited out, not counted as a retry
    assert np.array_equal(_decoded(runner, job.output_key), _decoded(clean, job.output_key))


def test_a_full_queue_never_fails_an_accepted_job_however_often_it_refuses(tmp_path):
    job = _job(max_attempts=2)
    clean, _ = _render(tmp_path / "clean", job, PureModel())
    refusals = {"r0c0": [OverloadedError("quality")] * 6, "r1c1": [OverloadedError("quality")] * 3}
    runner, result = _render(tmp_path / "busy", job, FailingTiles(job, refusals))
    assert result.retries == 0
    assert np.array_equal(_decoded(runner, job.output_key), _decoded(clean, job.output_key))


def test_a_call_failing_every_attempt_fails_the_job_and_stores_nothing(tmp_path):
    job = _job(max_attempts=3)
    dead = [ReplicaUnavailable("quality", "ActorDiedError")] * 3
    runner = _runner(tmp_path)
    with pytest.raises(JobFailed, match="tile r0c0 failed after 3 attempts: ReplicaUnavailable"):
        asyncio.run(runner.render(job, FailingTiles(job, {"r0c0": dead})))
    assert runner.progress.status == "failed"
    assert not runner.store.exists(job.output_key)


def test_an_error_of_the_model_fails_the_job_with_its_reason_and_no_retry(tmp_path):
    job = _job()
    model = FailingTiles(job, {"r1c0": [ValueError("bad latent")]})
    runner = _runner(tmp_path)
    with pytest.raises(JobFailed, match=r"tile r1c0: ValueError: bad latent"):
        asyncio.run(runner.render(job, model))


def test_the_split_of_a_tile_is_four_overlapping_latent_aligned_sub_tiles():
    tile = plan_tiles(256, 120, 64, None, 8).tiles[5]  # 64 x 64: 120 takes two whole tiles
    sub = split_plan(tile, 8)
    assert (sub.width, sub.height, sub.rows, sub.cols) == (64, 64, 2, 2)
    # 64 + 8 px shared out on the grid: 40 + 32 along each axis, overlapping by 8
    assert (sub.widths, sub.heights) == ((40, 32), (40, 32))
    assert [t.x for t in sub.tiles[:2]] == [0, 32]
    assert all(t.x % 8 == 0 and t.y % 8 == 0 for t in sub.tiles)


def test_an_oom_tile_is_split_and_gives_the_bytes_of_the_unsplit_render(tmp_path):
    job = _job(height=120)  # tiles of 64 or 56 x 64
    clean, _ = _render(tmp_path / "clean", job, PureModel())
    model = PureModel(oom_over=48 * 48)  # whole tiles run out of memory, sub-tiles fit
    runner, result = _render(tmp_path / "split", job, model)
    assert result.splits == result.tiles
    sub_tiles = {size: n for size, n in model.calls.items() if max(size) <= 40}
    assert set(sub_tiles) == {(40, 40), (40, 32), (32, 40), (32, 32)}
    assert sum(sub_tiles.values()) == 4 * result.tiles
    assert np.array_equal(_decoded(runner, job.output_key), _decoded(clean, job.output_key))


def test_splits_stop_at_the_depth_limit_with_the_reason(tmp_path):
    job = _job(tile_size=128, width=240, height=128)  # two whole 128 px tiles
    model = PureModel(oom_over=16 * 16)  # 128 -> 72 -> 40 still runs out of memory
    runner = _runner(tmp_path)
    with pytest.raises(JobFailed, match=r"ran out of memory: CUDA out of memory"):
        asyncio.run(runner.render(job, model))
    assert model.calls[(72, 72)] > 0 and model.calls[(40, 40)] > 0
    assert set(model.calls) == {(128, 128), (72, 72), (40, 40)}  # depth 2 is the last


def test_tiles_in_flight_never_exceed_the_bound_and_reach_it(tmp_path):
    model = PureModel()
    _render(tmp_path, _job(max_in_flight=3), model)
    assert model.most_in_flight == 3


def test_tiles_in_flight_are_what_the_running_replicas_take(tmp_path):
    model = PureModel()

    async def replicas() -> int:
        return 2

    job = _job(replica_requests=2)  # max_ongoing_requests 2 on 2 replicas, under the cap of 32
    asyncio.run(_runner(tmp_path).render(job, model, replicas=replicas))
    assert model.most_in_flight == 4


class SlowFirstTile(PureModel):
    """Holds the first tile `hold_s` seconds; notes the tile rows sent while it is out."""

    def __init__(self, job: LargeRenderJob, hold_s: float):
        super().__init__()
        self.hold_s = hold_s
        self.plan = plan_tiles(job.width, job.height, job.tile_size, job.overlap, job.align)
        self.row_of = {tile_seed(job.seed, tile): tile.row for tile in self.plan.tiles}
        self.first_seed = tile_seed(job.seed, self.plan.tiles[0])
        self.first_out = False
        self.rows_sent_meanwhile: set[int] = set()

    async def __call__(self, request: GenerateRequest) -> GenerateResult:
        if request.seed != self.first_seed:
            if self.first_out:
                self.rows_sent_meanwhile.add(self.row_of[request.seed])
            return await super().__call__(request)
        self.first_out = True
        await asyncio.sleep(self.hold_s)
        self.first_out = False
        return self._render(request)


def test_a_slow_tile_holds_back_tiles_more_than_a_few_rows_below_it(tmp_path):
    """Tiles that came back wait in memory until the rows above them are done: while the
    first tile is out, no tile is sent from further down than `rows_ahead` rows."""
    job = _job(width=128, height=1024, base_image=_base(16, 128), max_in_flight=2)
    slow = SlowFirstTile(job, hold_s=0.5)
    assert slow.plan.cols == 3 and slow.plan.rows > 8
    runner, _ = _render(tmp_path, job, slow)
    assert rows_ahead(2, 3) == 4  # the row 2 tiles in flight fill, and three more
    assert slow.rows_sent_meanwhile == {0, 1, 2, 3}  # then it waited for the first tile
    steady, _ = _render(tmp_path / "steady", job, PureModel())
    assert np.array_equal(_decoded(runner, job.output_key), _decoded(steady, job.output_key))


def test_progress_counts_tiles_as_they_finish(tmp_path):
    job = _job()
    runner = _runner(tmp_path)
    seen: list[tuple[str, int]] = []
    model = PureModel()

    async def watched(request: GenerateRequest) -> GenerateResult:
        seen.append((runner.progress.phase, runner.progress.done))
        return await model(request)

    result = asyncio.run(runner.render(job, watched))
    assert {phase for phase, _ in seen} == {"tiles"}
    assert [done for _, done in seen] == sorted(done for _, done in seen)
    assert runner.progress.done == runner.progress.total == result.tiles


def test_a_base_render_goes_through_the_same_call(tmp_path):
    model = PureModel()
    runner, result = _render(tmp_path, _job(base_image=None), model)
    assert result.base_size == base_size(256, 128, 64, 8)
    assert model.calls[result.base_size] == 1


class HostedModel(PureModel):
    """A hosted model's replica: a flat image at any size, with its provider record."""

    def _render(self, request: GenerateRequest) -> GenerateResult:
        result = super()._render(request)
        result.provider = {"provider": "ideogram", "provider_model": "V_2", "cost_usd": 0.08}
        return result


def test_a_hosted_base_is_drawn_by_the_hosted_model_and_refined_by_the_local_one(tmp_path):
    job = _job(base_image=None, base_model_name="ideo", base_resolution=128)
    local, hosted = PureModel(), HostedModel()
    runner = _runner(tmp_path)
    result = asyncio.run(runner.render(job, local, hosted))
    hosted_size = base_size(256, 128, 128, 8)  # the hosted model's native area, not 64's
    assert result.base_size == hosted_size and dict(hosted.calls) == {hosted_size: 1}
    assert sum(local.calls.values()) == result.tiles and hosted_size not in local.calls
    assert result.provider == {"provider": "ideogram", "provider_model": "V_2", "cost_usd": 0.08}
    base = np.broadcast_to(np.array([11, 11, 11], dtype=np.uint8), (128, 256, 3))
    assert np.array_equal(_decoded(runner, job.output_key), base)  # the hosted base, refined


def test_a_resumed_job_reuses_the_hosted_base_and_keeps_what_it_cost(tmp_path):
    job = _job(base_image=None, base_model_name="ideo", base_resolution=128, checkpoint=True)
    failing = FailingTiles(job, {"r0c1": [ValueError("the replica broke")]})
    hosted = HostedModel()
    runner = _runner(tmp_path)
    with pytest.raises(JobFailed, match="the replica broke"):
        asyncio.run(runner.render(job, failing, hosted))
    again, hosted_again = _runner(tmp_path), HostedModel()
    result = asyncio.run(again.render(job, PureModel(), hosted_again))
    assert sum(hosted.calls.values()) == 1 and not hosted_again.calls  # paid once
    assert result.provider["cost_usd"] == 0.08
    assert not again.store.list_keys(f"job-pieces/{job.job_id}/")  # cleared when done


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff"])
def test_a_large_file_carries_its_run_id_and_parameters(tmp_path, fmt):
    tags = ImageMetadata("job-1", "a harbour\nSteps: 2, Seed: 11", '{"run_id": "job-1"}')
    job = _job(format=fmt, output_key=f"renders/job-1/image.{fmt}", metadata=tags)
    runner, _ = _render(tmp_path, job, PureModel())
    carried = read_metadata(runner.store.get_bytes(job.output_key))
    assert carried == {"run_id": "job-1", "parameters": tags.parameters, "settings": tags.settings}


def test_an_upscale_chains_passes_of_a_pure_upscaler(tmp_path):
    source = _base(48, 40)

    async def nearest_x2(request: UpscaleRequest) -> UpscaleResult:
        image = request.image.repeat(2, axis=0).repeat(2, axis=1)
        if request.crop is not None:
            image = request.crop.cut(image)
        return UpscaleResult(np.ascontiguousarray(image), 0.001, "replica-u", ["0"])

    job = UpscaleJob(
        job_id="up-1",
        model_name="upscaler",
        image=source,
        scale=4,
        model_scale=2,
        tile_size=16,
        padding=4,
        output_key="renders/up-1/image.png",
        metadata=ImageMetadata("up-1", "x", "{}"),
    )
    runner = _runner(tmp_path)
    result = asyncio.run(runner.upscale(job, nearest_x2))
    expected = source.repeat(4, axis=0).repeat(4, axis=1)
    assert (result.width, result.height) == (192, 160)
    assert np.array_equal(_decoded(runner, job.output_key), expected)
    assert runner.progress.phase == "done"
    assert read_metadata(runner.store.get_bytes(job.output_key))["run_id"] == "up-1"


def test_the_next_tile_leaves_before_the_one_that_came_back_is_blended(tmp_path, monkeypatch):
    """One tile in flight: the replica gets its next tile before the router blends the last."""
    events: list[str] = []

    class Logged(PureModel):
        async def __call__(self, request: GenerateRequest) -> GenerateResult:
            events.append("send")
            return await super().__call__(request)

    own_copy = fanout._own_copy

    def blended(pixels: np.ndarray) -> np.ndarray:
        events.append("blend")
        return own_copy(pixels)

    monkeypatch.setattr(fanout, "_own_copy", blended)
    _render(tmp_path, _job(base_image=_base(), max_in_flight=1), Logged())
    tiles = events.count("send")
    assert tiles > 2
    assert events == ["send"] + ["send", "blend"] * (tiles - 1) + ["blend"]


def test_a_job_records_how_long_it_took_to_reach_every_replica(tmp_path):
    """The ramp: from the first tile's start to the first start of the last replica used."""

    class TwoReplicas(PureModel):
        """The first two calls run on replica-a, the others on replica-b, one second apart."""

        count = 0

        async def __call__(self, request: GenerateRequest) -> GenerateResult:
            index, self.count = self.count, self.count + 1
            result = await super().__call__(request)
            replica = "replica-a" if index < 2 else "replica-b"
            return dataclasses.replace(result, replica=replica, started_at=100.0 + index)

    _, result = _render(tmp_path, _job(max_in_flight=1), TwoReplicas())
    assert result.replicas_used == ["replica-a", "replica-b"]
    assert result.replica_ramp_s == 2.0 and result.metrics()["replica_ramp_s"] == 2.0


def test_one_replica_or_no_call_is_no_ramp():
    stats = fanout.CallStats()
    assert stats.ramp_s() == 0.0
    for start in (5.0, 6.0, 7.5):
        stats.record("replica-a", start, 0.5)
    assert stats.ramp_s() == 0.0
    stats.record("replica-b", 5.25, 0.5)
    assert stats.ramp_s() == 0.25
