"""`tiny:SEED` builds a tiny model of the config's family; each runs every mode and a hires job."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from diffusers import (
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image
from pydantic import ValidationError

from core.config import ModelConfig, StorageConfig
from core.largeformat.runner import TileJobRunner
from core.schemas import GenerateRequest, LargeRenderJob
from core.store import open_store
from serve.engine import RenderEngine
from serve.loader import load_model

GRADIENT = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
MASK = np.zeros((64, 64, 3), np.uint8)
MASK[16:48, 16:48] = 255


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def sdxl(cache_dir):
    return load_model(ModelConfig(source="tiny:0", family="sdxl"), cache_dir, "xl")


def request(mode: str, seed: int = 5) -> GenerateRequest:
    extra = {}
    if mode != "txt2img":
        extra = {"init_image": GRADIENT, "strength": 0.6}
    if mode == "inpaint":
        extra["mask"] = MASK
    return GenerateRequest(
        prompt="a red circle",
        width=64,
        height=64,
        steps=2,
        guidance=5.0,
        seed=seed,
        mode=mode,
        **extra,
    )


def test_sdxl_tiny_loads_sdxls_pipelines_on_one_set_of_weights(sdxl):
    assert isinstance(sdxl.txt2img, StableDiffusionXLPipeline)
    assert isinstance(sdxl.img2img, StableDiffusionXLImg2ImgPipeline)
    assert isinstance(sdxl.inpaint, StableDiffusionXLInpaintPipeline)
    assert sdxl.img2img.unet is sdxl.txt2img.unet is sdxl.inpaint.unet
    assert sdxl.txt2img.text_encoder_2 is not None  # SDXL's second encoder, with projection
    assert sdxl.txt2img.unet.config.addition_embed_type == "text_time"  # size conditioning


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_sdxl_tiny_renders_every_mode_reproducibly(sdxl, mode):
    engine = RenderEngine(sdxl, max_batch_size=1, fixed_batch_shape=True)
    first, again = engine.render([request(mode)])[0], engine.render([request(mode)])[0]
    other = engine.render([request(mode, seed=6)])[0]
    assert first.image.shape == (64, 64, 3) and first.image.std() > 0
    assert np.array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)
    if mode == "inpaint":  # the mask is used: another mask gives another image
        moved = request(mode)
        moved.mask = np.roll(MASK, 24, axis=1)
        assert not np.array_equal(engine.render([moved])[0].image, first.image)


def test_sd_and_sdxl_tiny_models_of_one_seed_are_different_models(sdxl, cache_dir):
    sd = load_model(ModelConfig(source="tiny:0"), cache_dir)
    assert isinstance(sd.txt2img, StableDiffusionPipeline)
    assert (cache_dir / "tiny-v1-seed0").is_dir() and (cache_dir / "tiny-sdxl-v1-seed0").is_dir()
    images = [
        RenderEngine(model, 1, True).render([request("txt2img")])[0].image for model in (sd, sdxl)
    ]
    assert not np.array_equal(*images)


def test_a_hires_job_runs_on_the_sdxl_tiny_model(sdxl, tmp_path):
    engine = RenderEngine(sdxl, max_batch_size=1, fixed_batch_shape=True)
    one_at_a_time = asyncio.Lock()  # as a replica runs its batches (the scheduler has state)

    async def call(generate: GenerateRequest):
        async with one_at_a_time:
            return await asyncio.to_thread(lambda: engine.render([generate])[0])

    job = LargeRenderJob(
        job_id="xl-hires",
        model_name="xl",
        prompt="a red circle",
        width=384,
        height=256,
        steps=4,
        strength=0.5,
        guidance=5.0,
        seed=3,
        tile_size=256,
        native_resolution=256,
        align=8,
        output_key="xl-hires.png",
        mode="hires",
    )
    store = open_store(StorageConfig(kind="local", path=tmp_path / "store"))
    result = asyncio.run(TileJobRunner(store, tmp_path / "spool").render(job, call))
    with Image.open(tmp_path / "store" / result.output_key) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (256, 384, 3) and pixels.std() > 0
    assert result.tiles >= 2


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_tiny_sources_of_families_not_built_are_refused_by_the_config(family):
    with pytest.raises(ValidationError, match=f"builds families sd, sdxl, not '{family}'"):
        ModelConfig(source="tiny:0", family=family)
