"""`tiny:SEED` builds a tiny model of the config's family; each runs every mode and a hires job."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from diffusers import (
    FluxImg2ImgPipeline,
    FluxInpaintPipeline,
    FluxPipeline,
    StableDiffusion3Img2ImgPipeline,
    StableDiffusion3InpaintPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image

from core.config import ModelConfig, StorageConfig
from core.errors import RequestError
from core.largeformat.fused_schemas import PromptRequest
from core.largeformat.runner import TileJobRunner
from core.schemas import GenerateRequest, LargeRenderJob
from core.store import open_store
from serve.engine import RenderEngine
from serve.fused_engine import FusedEngine
from serve.loader import LoadedModel, load_model
from serve.tiny_pipeline import build_tiny_pipeline

FAMILIES = ("sd", "sdxl", "sd3", "flux")
PIPELINES = {
    "sd": (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline),
    "sdxl": (
        StableDiffusionXLPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLInpaintPipeline,
    ),
    "sd3": (
        StableDiffusion3Pipeline,
        StableDiffusion3Img2ImgPipeline,
        StableDiffusion3InpaintPipeline,
    ),
    "flux": (FluxPipeline, FluxImg2ImgPipeline, FluxInpaintPipeline),
}
GRADIENT = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
MASK = np.zeros((64, 64, 3), np.uint8)
MASK[16:48, 16:48] = 255


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def models(cache_dir) -> dict[str, LoadedModel]:
    return {
        family: load_model(ModelConfig(source="tiny:0", family=family), cache_dir, family)
        for family in FAMILIES
    }


def request(mode: str, seed: int = 5, mask: np.ndarray = MASK) -> GenerateRequest:
    extra = {}
    if mode != "txt2img":
        extra = {"init_image": GRADIENT, "strength": 0.6}
    if mode == "inpaint":
        extra["mask"] = mask
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


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_loads_its_own_pipelines_on_one_set_of_weights(models, family):
    model = models[family]
    loaded = (model.txt2img, model.img2img, model.inpaint)
    assert tuple(type(pipe) for pipe in loaded) == PIPELINES[family]
    denoisers = {id(getattr(pipe, "unet", None) or pipe.transformer) for pipe in loaded}
    assert len(denoisers) == 1 and len({id(pipe.vae) for pipe in loaded}) == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_a_model_describes_what_it_loaded_and_where(models, family):
    described = models[family].describe()
    assert described["pipelines"] == {
        mode: cls.__name__
        for mode, cls in zip(("txt2img", "img2img", "inpaint"), PIPELINES[family], strict=True)
    }
    assert described["dtype"] == "float32" and described["device"] == "cpu"
    denoiser = "unet" if family in ("sd", "sdxl") else "transformer"
    encoders = {"sd": 1, "sdxl": 2, "sd3": 3, "flux": 2}[family]
    assert set(described["components"]) == {denoiser, "vae", "text_encoder"} | {
        f"text_encoder_{i}" for i in range(2, encoders + 1)
    }
    assert set(described["components"].values()) == {"cpu"}


def test_each_family_has_its_own_pieces(models):
    sdxl, sd3, flux = models["sdxl"].txt2img, models["sd3"].txt2img, models["flux"].txt2img
    assert sdxl.text_encoder_2 is not None  # SDXL's second encoder, with a projection
    assert sdxl.unet.config.addition_embed_type == "text_time"  # its size conditioning
    assert type(sd3.text_encoder_3).__name__ == "T5EncoderModel"  # SD3's third encoder
    assert type(sd3.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert sd3.vae.config.latent_channels == 16
    assert flux.transformer.config.guidance_embeds  # Flux's guidance embedding
    assert type(flux.text_encoder_2).__name__ == "T5EncoderModel"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_each_family_renders_every_mode_reproducibly(models, family, mode):
    engine = RenderEngine(models[family], max_batch_size=1, fixed_batch_shape=True)
    first, again = engine.render([request(mode)])[0], engine.render([request(mode)])[0]
    other = engine.render([request(mode, seed=6)])[0]
    assert first.image.shape == (64, 64, 3) and first.image.std() > 0
    assert np.array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)
    if mode == "inpaint":  # the mask is used: another mask gives another image
        moved = engine.render([request(mode, mask=np.roll(MASK, 24, axis=1))])[0]
        assert not np.array_equal(moved.image, first.image)


def test_one_seed_builds_a_different_model_per_family(models, cache_dir):
    engines = [RenderEngine(models[family], 1, True) for family in FAMILIES]
    images = [engine.render([request("txt2img")])[0].image.tobytes() for engine in engines]
    assert len(set(images)) == len(FAMILIES)
    names = {"tiny-v1-seed0", "tiny-sdxl-v1-seed0", "tiny-sd3-v1-seed0", "tiny-flux-v1-seed0"}
    assert names <= {path.name for path in cache_dir.iterdir()}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_runs_a_hires_job(models, family, tmp_path):
    engine = RenderEngine(models[family], max_batch_size=1, fixed_batch_shape=True)
    one_at_a_time = asyncio.Lock()  # as a replica runs its batches (schedulers keep state)

    async def call(generate: GenerateRequest):
        async with one_at_a_time:
            return await asyncio.to_thread(lambda: engine.render([generate])[0])

    job = LargeRenderJob(
        job_id=f"{family}-hires",
        model_name=family,
        prompt="a red circle",
        width=384,
        height=256,
        steps=4,
        strength=0.5,
        guidance=5.0,
        seed=3,
        tile_size=256,
        native_resolution=256,
        align=16,
        output_key=f"{family}-hires.png",
        mode="hires",
    )
    store = open_store(StorageConfig(kind="local", path=tmp_path / "store"))
    result = asyncio.run(TileJobRunner(store, tmp_path / "spool").render(job, call))
    with Image.open(tmp_path / "store" / result.output_key) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (256, 384, 3) and pixels.std() > 0
    assert result.tiles >= 2


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_family_without_fused_renders_refuses_them_by_name(models, family):
    engine = FusedEngine(models[family], family)  # every replica constructs one
    with pytest.raises(
        RequestError, match=f"need a model of family sd or sdxl, this one is '{family}'"
    ):
        engine.encode_prompt(PromptRequest("a red circle", "", 5.0, 256, 256))


def test_a_family_without_a_tiny_builder_is_named():
    with pytest.raises(ValueError, match="built for families sd, sdxl, sd3, flux"):
        build_tiny_pipeline(0, "upscaler")
