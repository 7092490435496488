"""Memory options: what the config accepts, what a replica does with them, and tiny renders."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from diffusers.models.attention_processor import SlicedAttnProcessor
from pydantic import ValidationError

from core.config import ModelConfig
from core.memory_options import MemoryOptions, memory_actions
from core.schemas import GenerateRequest, LoadedPipelines
from serve import loader
from serve.engine import RenderEngine
from serve.loader import load_model

PLACEMENTS = {"to_device", "model_cpu_offload", "sequential_cpu_offload"}


def test_memory_defaults_to_nothing_and_refuses_unknown_keys():
    model = ModelConfig(source="tiny:0")
    assert model.memory == MemoryOptions(offload="none")
    assert not any(model.memory.model_dump(exclude={"offload"}).values())
    with pytest.raises(ValidationError, match="Extra inputs"):
        ModelConfig(source="tiny:0", memory={"vae_tilling": True})
    with pytest.raises(ValidationError, match="offload"):
        ModelConfig(source="tiny:0", memory={"offload": "disk"})


@pytest.mark.parametrize("family", ["sd", "sdxl", "flux"])
def test_drop_t5_is_refused_outside_sd3(family):
    with pytest.raises(ValidationError, match=f"memory.drop_t5 needs family 'sd3'.*{family}"):
        ModelConfig(source="tiny:0", family=family, memory={"drop_t5": True})
    assert ModelConfig(source="tiny:0", family="sd3", memory={"drop_t5": True}).memory.drop_t5


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_attention_slicing_is_refused_where_it_would_do_nothing(family):
    with pytest.raises(ValidationError, match="attention_slicing does nothing for family"):
        ModelConfig(source="tiny:0", family=family, memory={"attention_slicing": True})


def test_memory_options_are_refused_for_upscalers_and_hosted_models_naming_them():
    with pytest.raises(ValidationError, match=r"memory \(offload, vae_tiling\) applies to"):
        ModelConfig(
            source="realesrgan:animevideov3-x4",
            family="upscaler",
            upscaler={"scale": 4},
            memory={"offload": "model", "vae_tiling": True},
        )
    with pytest.raises(ValidationError, match=r"memory \(vae_slicing\) .* not family 'remote'"):
        ModelConfig(
            family="remote",
            remote={"provider": "openai", "model": "gpt-image-1"},
            memory={"vae_slicing": True},
        )


ALL_OPTIONS = [
    MemoryOptions(offload=o, vae_tiling=t, vae_slicing=s, attention_slicing=a, drop_t5=d)
    for o, t, s, a, d in itertools.product(("none", "model", "sequential"), *[(False, True)] * 4)
]


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_every_combination_places_weights_once_and_offloads_only_on_cuda(family, device):
    for options in ALL_OPTIONS:
        actions = memory_actions(options, family, device)
        placement = [a for a in actions if a in PLACEMENTS]
        assert len(placement) == 1 and len(set(actions)) == len(actions)
        offloaded = options.offload != "none" and device.startswith("cuda")
        expected = {"model": "model_cpu_offload", "sequential": "sequential_cpu_offload"}
        assert placement[0] == (expected[options.offload] if offloaded else "to_device")
        assert ("drop_t5" in actions) == (options.drop_t5 and family == "sd3")
        if "drop_t5" in actions:  # left out when loading, so before anything else
            assert actions[0] == "drop_t5"
        assert actions.index(placement[0]) <= 1  # placed before the VAE / attention settings
        assert ("vae_tiling" in actions) == options.vae_tiling
        assert ("vae_slicing" in actions) == options.vae_slicing
        sliced = options.attention_slicing and family in ("sd", "sdxl")
        assert ("attention_slicing" in actions) == sliced


def test_the_gpu_decisions_for_the_published_layouts():
    flux = MemoryOptions(offload="model", vae_tiling=True)
    assert memory_actions(flux, "flux", "cuda") == ["model_cpu_offload", "vae_tiling"]
    assert memory_actions(flux, "flux", "cpu") == ["to_device", "vae_tiling"]
    sd35 = MemoryOptions(offload="sequential", drop_t5=True)
    assert memory_actions(sd35, "sd3", "cuda") == ["drop_t5", "sequential_cpu_offload"]
    assert memory_actions(MemoryOptions(), "sdxl", "cuda") == ["to_device"]


class _FakePipe:
    """Records the diffusers calls a step makes."""

    def __init__(self, calls: list[str], name: str) -> None:
        self.calls, self.name = calls, name

    def __getattr__(self, attr: str):
        return lambda *args, **kwargs: self.calls.append(f"{self.name}.{attr}{kwargs or ''}")


def test_model_offload_hooks_every_pipeline_and_sequential_offload_the_shared_modules():
    calls: list[str] = []
    pipes = tuple(_FakePipe(calls, name) for name in ("txt2img", "img2img", "inpaint"))
    loader._apply("model_cpu_offload", pipes, "cuda")
    assert calls == [
        f"{n}.enable_model_cpu_offload{{'device': 'cuda'}}"
        for n in ("txt2img", "img2img", "inpaint")
    ]
    calls.clear()
    loader._apply("sequential_cpu_offload", pipes, "cuda")
    assert calls == ["txt2img.enable_sequential_cpu_offload{'device': 'cuda'}"]


# -- tiny models really load and render with each option a CPU can run ---------------


def render(model: ModelConfig, cache, size: int = 64, seeds=(5,)) -> list[np.ndarray]:
    engine = RenderEngine(
        load_model(model, cache), max_batch_size=len(seeds), fixed_batch_shape=True
    )
    requests = [
        GenerateRequest(prompt="a red barn", width=size, height=size, steps=2, guidance=4.0, seed=s)
        for s in seeds
    ]
    return [result.image for result in engine.render(requests)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def test_sd3_without_t5_loads_every_mode_without_it_and_renders(cache):
    model = ModelConfig(source="tiny:0", family="sd3", memory={"drop_t5": True})
    loaded = load_model(model, cache)
    assert {p.text_encoder_3 for p in (loaded.txt2img, loaded.img2img, loaded.inpaint)} == {None}
    described = LoadedPipelines.model_validate(loaded.describe())
    assert "text_encoder_3" not in described.components and "text_encoder_2" in described.components
    assert described.memory == ["drop_t5", "to_device"]
    image = render(model, cache)[0]
    full = render(ModelConfig(source="tiny:0", family="sd3"), cache)[0]
    assert image.shape == (64, 64, 3) and image.std() > 0
    assert not np.array_equal(image, full)  # the T5 half of the prompt embedding is now zeros


def test_vae_tiling_decodes_images_over_the_vae_sample_size_in_tiles(cache):
    model = ModelConfig(source="tiny:0", memory={"vae_tiling": True})
    loaded = load_model(model, cache)
    assert loaded.txt2img.vae is loaded.inpaint.vae and loaded.img2img.vae.use_tiling
    tile = loaded.txt2img.vae.tile_sample_min_size
    assert tile == 256  # the tiny VAE's sample_size: 320 px is decoded as overlapping tiles
    tiled = render(model, cache, size=320)[0].astype(int)
    whole = render(ModelConfig(source="tiny:0"), cache, size=320)[0].astype(int)
    difference = np.abs(tiled - whole)
    assert difference.max() > 0 and difference.mean() < 8  # blended seams, the same picture


def test_vae_slicing_decodes_a_batch_one_image_at_a_time_with_the_same_pixels(cache):
    model = ModelConfig(source="tiny:0", family="sdxl", memory={"vae_slicing": True})
    assert load_model(model, cache).img2img.vae.use_slicing
    sliced = render(model, cache, seeds=(5, 6))
    batched = render(ModelConfig(source="tiny:0", family="sdxl"), cache, seeds=(5, 6))
    for a, b in zip(sliced, batched, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_attention_slicing_slices_the_shared_unet_and_renders(cache, family):
    model = ModelConfig(source="tiny:0", family=family, memory={"attention_slicing": True})
    loaded = load_model(model, cache)
    processors = set(map(type, loaded.inpaint.unet.attn_processors.values()))
    assert processors == {SlicedAttnProcessor} and loaded.memory == (
        "to_device",
        "attention_slicing",
    )
    sliced = render(model, cache)[0].astype(int)
    plain = render(ModelConfig(source="tiny:0", family=family), cache)[0].astype(int)
    assert np.abs(sliced - plain).max() <= 2


def test_offload_on_a_cpu_is_skipped_and_the_model_renders(cache):
    model = ModelConfig(source="tiny:0", memory={"offload": "sequential"})
    loaded = load_model(model, cache)
    assert loaded.memory == ("to_device",) and loaded.describe()["memory"] == ["to_device"]
    assert set(loaded.describe()["components"].values()) == {"cpu"}
    assert render(model, cache)[0].std() > 0
