"""The fused job's logic without Ray, on a fake model whose denoiser is pointwise.

A pointwise denoiser (a function of each latent value and the timestep alone) predicts
the same value for a pixel from every tile covering it, so fusing with weights that sum
to 1 must give the prediction of the whole canvas: the fused run equals the scheduler
run on the untiled canvas. The fake VAE is pointwise per latent cell (8x8 pixel
blocks), so tiled decoding is exact too.
"""

from __future__ import annotations

import asyncio
import io
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, PNDMScheduler
from PIL import Image

from core.config import StorageConfig
from core.errors import JobFailed, ReplicaUnavailable, TileOutOfMemory
from core.largeformat.fanout import RetryPolicy
from core.largeformat.fused_schemas import (
    Conditioning,
    DecodeRequest,
    DenoiseRequest,
    DenoiseResult,
    EncodeRequest,
    EncodeResult,
    FusedCalls,
    FusedSetup,
    PromptRequest,
    SchedulerSpec,
)
from core.largeformat.fusion_weights import latent_plan
from core.largeformat.latent_sampler import LatentSampler
from core.largeformat.runner import TileJobRunner
from core.schemas import GenerateResult, LargeRenderJob
from core.store import open_store

FACTOR = 8
SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    set_alpha_to_one=False,
    steps_offset=1,
)


def _spec(cls=PNDMScheduler, **extra) -> SchedulerSpec:
    """The tiny model's scheduler config, as `cls` (the loader swaps schedulers so)."""
    base = PNDMScheduler(**SCHEDULER, skip_prk_steps=True).config
    return SchedulerSpec(cls.__name__, dict(cls.from_config(base, **extra).config))


def pointwise(latents: np.ndarray, timestep: float) -> np.ndarray:
    return (np.tanh(latents) * 0.8 + np.float32(timestep / 4000)).astype(np.float32)


class FakeModel:
    """A pointwise denoiser and VAE on `replicas` named replicas, with jitter in timing."""

    def __init__(
        self,
        spec: SchedulerSpec | None = None,
        replicas: int = 3,
        jitter: int = 0,
        wire_dtype: str = "float32",
    ):
        self.spec = spec or _spec()
        self.wire_dtype = wire_dtype
        self.in_flight = self.most_in_flight = 0
        self.replicas = [f"replica-{i}" for i in range(replicas)]
        self.rng = random.Random(jitter)
        self.jitter = jitter
        self.denoise_requests: list[DenoiseRequest] = []
        self.decoded: list[np.ndarray] = []
        self.failures: list[Exception] = []
        self.shared: list[object] = []

    def calls(self) -> FusedCalls:
        return FusedCalls(
            self.render, self.encode_prompt, self.denoise, self.decode, self.encode, self.share
        )

    def share(self, value: object) -> object:
        handle = ("ref", len(self.shared))
        self.shared.append(value)
        return handle

    async def _pause(self) -> str:
        if self.jitter:
            await asyncio.sleep(self.rng.random() * 0.003)
        return self.rng.choice(self.replicas)

    async def render(self, request) -> GenerateResult:
        raise AssertionError("no text boxes in these jobs")

    async def encode_prompt(self, request: PromptRequest) -> FusedSetup:
        embeds = np.zeros((2 if request.guidance > 1 else 1, 3, 4), np.float32)
        conditioning = Conditioning("key", embeds)
        return FusedSetup(conditioning, self.spec, 4, FACTOR, self.wire_dtype, "replica-0")

    async def denoise(self, request: DenoiseRequest) -> DenoiseResult:
        self.denoise_requests.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            replica = await self._pause()
        finally:
            self.in_flight -= 1
        if self.failures:
            raise self.failures.pop(0)
        noise = pointwise(request.latents.astype(np.float32), request.timestep)
        return DenoiseResult(noise.astype(request.latents.dtype), replica, 0.0, 0.001)

    async def decode(self, request: DecodeRequest) -> GenerateResult:
        self.decoded.append(request.latents)
        replica = await self._pause()
        levels = np.clip(request.latents[:3] * 40 + 128, 0, 255).round().astype(np.uint8)
        pixels = levels.transpose(1, 2, 0).repeat(FACTOR, 0).repeat(FACTOR, 1)
        return GenerateResult(pixels, 0, 0.001, 1, replica, [])

    async def encode(self, request: EncodeRequest) -> EncodeResult:
        replica = await self._pause()
        h, w = request.image.shape[0] // FACTOR, request.image.shape[1] // FACTOR
        blocks = request.image.reshape(h, FACTOR, w, FACTOR, 3).mean(axis=(1, 3)) / 255 - 0.5
        latents = np.concatenate([blocks, blocks.mean(axis=2, keepdims=True)], axis=2)
        return EncodeResult(latents.transpose(2, 0, 1).astype(np.float32), replica)


async def _no_sleep(_: float) -> None:
    return None


def _job(**overrides) -> LargeRenderJob:
    fields = dict(
        job_id="fused-1",
        model_name="quality",
        prompt="a harbour",
        width=200,
        height=120,
        steps=3,
        guidance=5.0,
        seed=11,
        tile_size=64,
        native_resolution=64,
        align=FACTOR,
        output_key="renders/fused-1/image.png",
        mode="fused",
    )
    return LargeRenderJob(**(fields | overrides))


def _run(tmp_path: Path, job: LargeRenderJob, model: FakeModel):
    store = open_store(StorageConfig(kind="local", path=tmp_path / "store"))
    runner = TileJobRunner(store, tmp_path / "spool", RetryPolicy(sleep=_no_sleep))
    result = asyncio.run(runner.fused(job, model.calls()))
    image = np.asarray(Image.open(io.BytesIO(store.get_bytes(job.output_key))).convert("RGB"))
    return runner, result, image


def _untiled(job: LargeRenderJob, spec: SchedulerSpec, init: np.ndarray | None = None):
    """The scheduler run on the whole canvas with the pointwise denoiser (no tiles)."""
    plan = latent_plan(job.width, job.height, job.tile_size, job.overlap, FACTOR)
    strength = None if init is None else job.strength
    sampler = LatentSampler(spec, job.steps, job.seed, strength)
    latents = sampler.start((1, 4, plan.height, plan.width), init)
    for t in sampler.timesteps:
        prediction = pointwise(sampler.model_input(latents, t), float(t))
        latents = sampler.step(prediction, t, latents)
    return latents[0].numpy()


@pytest.mark.parametrize("fuse", ["gaussian", "uniform"])
def test_fused_equals_the_untiled_scheduler_run_for_a_pointwise_denoiser(tmp_path, fuse):
    job = _job(fuse=fuse, decode_tile=256)  # one decode tile: the whole latent canvas
    model = FakeModel()
    _, result, image = _run(tmp_path, job, model)
    (latents,) = model.decoded
    np.testing.assert_allclose(latents, _untiled(job, model.spec), rtol=0, atol=2e-5)
    assert image.shape == (120, 200, 3)
    grid = latent_plan(200, 120, 64, None, FACTOR)
    assert (result.tiles, result.redundancy) == (len(grid.tiles), grid.redundancy)
    evaluations = len(LatentSampler(model.spec, job.steps, 0).timesteps)  # PLMS: steps + 1
    assert evaluations == job.steps + 1
    assert len(model.denoise_requests) == evaluations * len(grid.tiles)


@pytest.mark.parametrize("size", [(200, 120), (203, 77), (61, 250), (64, 64)])
def test_any_size_comes_out_exactly_as_asked(tmp_path, size):
    job = _job(width=size[0], height=size[1], steps=2)
    model = FakeModel()
    _, result, image = _run(tmp_path, job, model)
    assert image.shape == (size[1], size[0], 3) and (result.width, result.height) == size
    # the tiled decode of a cell-wise VAE equals decoding the whole canvas at once
    whole = _run(tmp_path / "whole", replace(job, decode_tile=512), FakeModel())[2]
    assert np.array_equal(image, whole)


def test_the_same_bytes_whatever_the_replicas_order_grouping_or_concurrency(tmp_path):
    job = _job(width=232, height=136)
    _, _, reference = _run(tmp_path / "a", job, FakeModel(replicas=1))
    variants = [
        (replace(job, max_in_flight=1), FakeModel(replicas=1)),
        (job, FakeModel(replicas=8, jitter=1)),
        (job, FakeModel(replicas=8, jitter=2)),
        (replace(job, tiles_per_call=3), FakeModel(replicas=2, jitter=3)),
    ]
    for index, (variant, model) in enumerate(variants):
        _, result, image = _run(tmp_path / str(index), variant, model)
        assert np.array_equal(image, reference), index
    tiles = len(latent_plan(job.width, job.height, job.tile_size, None, FACTOR).tiles)
    assert tiles == 12  # grouped 3 by 3 in plan order
    assert {len(r.latents) for r in model.denoise_requests} == {3}


def test_the_conditioning_is_shared_once_and_travels_by_reference(tmp_path):
    model = FakeModel()
    _run(tmp_path, _job(), model)
    assert len(model.shared) == 1 and isinstance(model.shared[0], Conditioning)
    assert {r.conditioning for r in model.denoise_requests} == {("ref", 0)}
    assert {r.key for r in model.denoise_requests} == {"key"}
    assert all(r.guidance == 5.0 for r in model.denoise_requests)


def test_steps_send_the_scaled_model_input_at_each_timestep(tmp_path):
    from diffusers import EulerDiscreteScheduler

    spec = _spec(EulerDiscreteScheduler)
    model = FakeModel(spec)
    job = _job(decode_tile=256)
    _run(tmp_path, job, model)
    sampler = LatentSampler(spec, job.steps, job.seed)
    assert sorted({r.timestep for r in model.denoise_requests}, reverse=True) == [
        float(t) for t in sampler.timesteps
    ]
    np.testing.assert_allclose(model.decoded[0], _untiled(job, spec), atol=2e-5)


def test_img2img_encodes_the_base_and_starts_at_the_strength(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    job = _job(base_image=base, strength=0.5, steps=4, decode_tile=256, width=200, height=120)
    model = FakeModel(_spec(DDIMScheduler, clip_sample=False))
    runner, result, image = _run(tmp_path, job, model)
    grid = latent_plan(200, 120, 64, None, FACTOR)
    assert len(model.denoise_requests) == 2 * len(grid.tiles)  # int(4 * 0.5) steps
    assert image.shape == (120, 200, 3) and result.base_size == (50, 30)
    assert runner.progress.phase == "done" and runner.progress.done == runner.progress.total


def test_a_stochastic_scheduler_is_seeded_from_the_job(tmp_path):
    spec = _spec(EulerAncestralDiscreteScheduler)
    first = _run(tmp_path / "a", _job(), FakeModel(spec, replicas=1))[2]
    second = _run(tmp_path / "b", _job(), FakeModel(spec, replicas=4, jitter=5))[2]
    other_seed = _run(tmp_path / "c", _job(seed=12), FakeModel(spec))[2]
    assert np.array_equal(first, second) and not np.array_equal(first, other_seed)


def test_a_lost_replica_is_retried_to_the_same_bytes(tmp_path):
    reference = _run(tmp_path / "a", _job(), FakeModel())[2]
    model = FakeModel()
    model.failures = [ReplicaUnavailable("quality", "ActorDiedError")] * 2
    _, result, image = _run(tmp_path / "b", _job(), model)
    assert np.array_equal(image, reference) and result.retries == 2


def test_out_of_memory_fails_the_job_asking_for_a_smaller_tile(tmp_path):
    model = FakeModel()
    model.failures = [TileOutOfMemory("2x512x512", "CUDA out of memory")]
    with pytest.raises(JobFailed, match="smaller tile_size"):
        _run(tmp_path, _job(), model)
    assert not (tmp_path / "store" / "renders").exists()


def test_progress_counts_every_denoise_round_and_decode_tile(tmp_path):
    runner, result, _ = _run(tmp_path, _job(), FakeModel())
    progress = runner.progress.as_dict()
    assert progress["status"] == "done" and progress["done"] == progress["total"]
    timings = result.timings
    for name in ("prompt_s", "steps_s", "step_overhead_ms", "fuse_s", "decode_s"):
        assert name in timings


def test_calls_in_flight_stay_within_what_the_running_replicas_take(tmp_path):
    model = FakeModel(replicas=2, jitter=7)

    async def two_replicas() -> int:
        return 2

    calls = replace(model.calls(), replicas=two_replicas)
    store = open_store(StorageConfig(kind="local", path=tmp_path / "store"))
    runner = TileJobRunner(store, tmp_path / "spool", RetryPolicy(sleep=_no_sleep))
    asyncio.run(runner.fused(_job(replica_requests=2), calls))
    assert model.most_in_flight == 4  # 2 replicas x 2 requests each, of 8 tiles


def test_crops_travel_in_half_precision_for_a_half_precision_model(tmp_path):
    model = FakeModel(wire_dtype="float16")
    _, _, image = _run(tmp_path, _job(decode_tile=256), model)
    assert {r.latents.dtype for r in model.denoise_requests} == {np.dtype(np.float16)}
    assert image.shape == (120, 200, 3)
    reference = _run(tmp_path / "full", _job(decode_tile=256), FakeModel())[2]
    assert np.abs(image.astype(int) - reference).max() <= 2  # only the rounding of the crops


def test_the_top_of_the_canvas_runs_into_the_next_step_while_the_bottom_computes(tmp_path):
    """No barrier between steps: with the last tile row slow, the first rows' next step
    goes out before the last row's step is back, and the image is the same."""
    job = _job(width=200, height=400, steps=2, decode_tile=512)
    grid = latent_plan(200, 400, 64, None, FACTOR)
    assert (grid.cols, grid.rows) == (4, 7)  # bands across rows; the last row's 4 tiles
    slow = set(range(len(grid.tiles) - grid.cols, len(grid.tiles)))  # go out last

    class SlowBottom(FakeModel):
        events: list[tuple[str, int, float]] = []

        async def denoise(self, request: DenoiseRequest) -> DenoiseResult:
            index = len(self.denoise_requests)
            self.events.append(("start", index, request.timestep))
            if index in slow:
                await asyncio.sleep(0.2)
            result = await super().denoise(request)
            self.events.append(("end", index, request.timestep))
            return result

    model = SlowBottom(replicas=4)
    _, _, image = _run(tmp_path, job, model)
    first_step = model.denoise_requests[0].timestep
    next_started = [i for i, e in enumerate(model.events) if e[0] == "start" and e[2] != first_step]
    slow_ended = [i for i, e in enumerate(model.events) if e[0] == "end" and e[1] in slow]
    assert next_started[0] < slow_ended[0]
    reference = _run(tmp_path / "ref", replace(job, max_in_flight=1), FakeModel(replicas=1))
    assert np.array_equal(image, reference[2])
