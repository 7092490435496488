"""The replica side of fused renders on real (tiny, random) pipelines, without Ray.

- With 'uniform' fusion and the panorama pipeline's windows, a fused render gives
  `StableDiffusionPanoramaPipeline`'s latents (up to float rounding) for every
  scheduler whose step is affine (`fuses_exactly`), and its pixels when decoded whole.
- `fuses_exactly` agrees with a numerical check of each scheduler the loader offers.
- SDXL: a fused render of one tile is `StableDiffusionXLPipeline`'s render.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    StableDiffusionPanoramaPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image

from core.config import ModelConfig, StorageConfig
from core.errors import RequestError, TileOutOfMemory
from core.largeformat.fused_schemas import (
    DecodeRequest,
    DenoiseRequest,
    FusedCalls,
    PromptRequest,
    SchedulerSpec,
)
from core.largeformat.latent_sampler import fuses_exactly
from core.largeformat.runner import TileJobRunner
from core.schemas import LargeRenderJob
from core.store import open_store
from serve.fused_engine import FusedEngine
from serve.loader import SCHEDULERS, load_model
from serve.tiny_pipeline import tiny_pipeline_dir

PROMPT = "a harbour town at dusk"
LINEAR = {  # scheduler: config changes (the tiny config leaves DDIM's clip_sample on)
    "default": {},
    "ddim": {"clip_sample": False},
    "euler": {},
    "lms": {},
    "dpm++": {},
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tiny(cache_dir):
    """The tiny model loaded once for the module; a test that swaps its scheduler puts the
    original (kept as `tiny.original`) back."""
    torch.set_num_threads(1)
    model = load_model(ModelConfig(source="tiny:0"), cache_dir)
    model.original = model.txt2img.scheduler
    return model


@pytest.fixture(scope="module")
def panorama(cache_dir):
    """The panorama pipeline of the same saved model, windows of 32 latents, stride 8."""
    pipe = StableDiffusionPanoramaPipeline.from_pretrained(
        tiny_pipeline_dir(cache_dir, 0), safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.get_views = functools.partial(pipe.get_views, window_size=32, stride=8)
    return pipe


def engine_calls(engine: FusedEngine, decoded: list[np.ndarray] | None = None) -> FusedCalls:
    """The engine's methods as the router's model calls (a thread each, like a replica)."""

    def threaded(method):
        async def call(request):
            return await asyncio.to_thread(method, request)

        return call

    async def denoise(request: DenoiseRequest):
        installed = engine.installed(request.key) or engine.install(request.conditioning)
        return await asyncio.to_thread(engine.denoise, request, installed)

    async def decode(request: DecodeRequest):
        if decoded is not None:
            decoded.append(request.latents)
        return await asyncio.to_thread(engine.decode, request)

    return FusedCalls(
        None, threaded(engine.encode_prompt), denoise, decode, threaded(engine.encode_image)
    )


def run_fused(tmp_path: Path, engine: FusedEngine, job: LargeRenderJob, decoded=None):
    store = open_store(StorageConfig(kind="local", path=tmp_path / "store"))
    runner = TileJobRunner(store, tmp_path / "spool")
    result = asyncio.run(runner.fused(job, engine_calls(engine, decoded)))
    with Image.open(tmp_path / "store" / result.output_key) as image:
        return result, np.asarray(image.convert("RGB"))


def fused_job(width: int, height: int, **overrides) -> LargeRenderJob:
    fields = dict(
        job_id=f"fused-{width}x{height}",
        model_name="quality",
        prompt=PROMPT,
        width=width,
        height=height,
        steps=3,
        guidance=5.0,
        seed=11,
        tile_size=256,
        native_resolution=256,
        align=8,
        output_key=f"fused-{width}x{height}.png",
        mode="fused",
    )
    return LargeRenderJob(**(fields | overrides))


@pytest.mark.parametrize("scheduler", sorted(LINEAR))
def test_uniform_fusion_matches_the_panorama_pipeline(tmp_path, tiny, panorama, scheduler):
    cls = type(tiny.original) if scheduler == "default" else SCHEDULERS[scheduler]
    spec = tiny.txt2img.scheduler = cls.from_config(tiny.original.config, **LINEAR[scheduler])
    try:
        _match_the_panorama(tmp_path, tiny, panorama, spec)
    finally:
        tiny.txt2img.scheduler = panorama.scheduler = tiny.original


def _match_the_panorama(tmp_path, model, pipe, spec) -> None:
    assert fuses_exactly(SchedulerSpec(type(spec).__name__, dict(spec.config)))[0]
    # 384x256: the panorama's windows of 32 latents at a stride of 8 are our tiles of
    # 256 px overlapping by 192; one decode tile covers the canvas
    job = fused_job(384, 256, fuse="uniform", overlap=192, decode_tile=512)
    decoded: list[np.ndarray] = []
    _, ours = run_fused(tmp_path, FusedEngine(model, "sd"), job, decoded)

    pipe.scheduler = type(spec).from_config(spec.config)
    kwargs = dict(width=384, height=256, num_inference_steps=3, guidance_scale=5.0)

    def theirs(output_type: str) -> np.ndarray:
        generator = torch.Generator().manual_seed(11)
        return pipe(PROMPT, generator=generator, output_type=output_type, **kwargs).images[0]

    latents = theirs("latent").numpy()
    (our_latents,) = decoded
    assert np.abs(our_latents - latents).max() < 1e-5 * np.abs(latents).max()
    pixels = (theirs("np") * 255).round().astype(np.uint8)
    difference = np.abs(ours.astype(int) - pixels)
    assert difference.max() <= 1 and difference.mean() < 1e-3


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_fuses_exactly_agrees_with_a_numerical_check(tiny, name):
    """Two windows' steps averaged against one step of their averaged predictions."""
    base = tiny.original.config
    cls = SCHEDULERS[name]
    rng = torch.Generator().manual_seed(0)
    sample = torch.randn((1, 4, 8, 8), generator=rng)
    predictions = [torch.randn((3, 2, 4, 8, 8), generator=rng)[:, i] for i in range(2)]

    def run(noise_per_step: list[torch.Tensor], seed: int) -> torch.Tensor:
        scheduler = cls.from_config(base)
        scheduler.set_timesteps(3)
        generator = torch.Generator().manual_seed(seed)
        stochastic = "generator" in inspect.signature(scheduler.step).parameters
        kwargs = {"generator": generator} if stochastic else {}
        x = sample
        for t, noise in zip(scheduler.timesteps, noise_per_step, strict=False):
            x = scheduler.step(noise, t, x, **kwargs, return_dict=False)[0]
        return x

    steps = [[p[i] for i in range(3)] * 2 for p in predictions]
    averaged = (run(steps[0], 1) + run(steps[1], 2)) / 2  # MultiDiffusion: each window alone
    fused = run([(a + b) / 2 for a, b in zip(steps[0], steps[1], strict=True)], 3)
    equal = torch.allclose(averaged, fused, rtol=1e-4, atol=1e-5)
    config = dict(cls.from_config(base).config)
    assert fuses_exactly(SchedulerSpec(cls.__name__, config))[0] == equal


def test_the_conditioning_is_installed_once_and_the_limits_hold(tmp_path, tiny):
    model = tiny
    engine = FusedEngine(model, "sd")
    run_fused(tmp_path, engine, fused_job(400, 256, steps=2))
    assert engine.installs == 1
    setup = engine.encode_prompt(PromptRequest(PROMPT, "", 1.0, 256, 256))
    assert not setup.conditioning.cfg and setup.latent_channels == 4
    limited = FusedEngine(model, "sd", max_pixels_per_call=256 * 256)
    latents = np.zeros((2, 4, 32, 32), np.float32)
    request = DenoiseRequest(setup.conditioning, setup.conditioning.key, latents, 900.0, 1.0)
    with pytest.raises(TileOutOfMemory):
        limited.denoise(request, limited.install(setup.conditioning))
    with pytest.raises(RequestError, match="this one is 'sd3'"):
        FusedEngine(model, "sd3").encode_prompt(PromptRequest(PROMPT, "", 5.0, 256, 256))


def test_sdxl_fused_on_one_tile_is_the_sdxl_pipeline(tmp_path, cache_dir):
    model = load_model(ModelConfig(source="tiny:0", family="sdxl"), cache_dir)
    assert isinstance(model.txt2img, StableDiffusionXLPipeline)
    engine = FusedEngine(model, "sdxl")
    decoded: list[np.ndarray] = []
    job = fused_job(256, 256, decode_tile=256)
    _, ours = run_fused(tmp_path / "one", engine, job, decoded)
    generator = torch.Generator().manual_seed(11)
    kwargs = dict(width=256, height=256, num_inference_steps=3, guidance_scale=5.0)
    theirs = model.txt2img(PROMPT, generator=generator, output_type="latent", **kwargs)
    np.testing.assert_allclose(decoded[0], theirs.images[0].numpy(), rtol=0, atol=1e-5)
    _, wide = run_fused(tmp_path / "wide", engine, fused_job(448, 256, fuse="gaussian"))
    assert wide.shape == (256, 448, 3) and engine.installs == 1
