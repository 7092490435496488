"""LoRA adapters and per-request schedulers (issue 15): the config's allow-lists, a render
choosing from them, and a tiny LoRA made from the tiny model changing real pixels."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError

from core.config import ClusterConfig, ModelConfig
from core.errors import RequestError
from core.largeformat.refine import txt2img
from core.records import new_run_id
from core.render_records import RecordLabels, single_record
from core.schemas import GenerateRequest, RenderRequestBody
from core.validation import resolve_large, resolve_render
from serve.engine import RenderEngine
from serve.loader import load_model
from serve.tiny_lora import save_tiny_lora


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    return save_tiny_lora(tmp_path_factory.mktemp("lora"), seed=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def cluster(lora_source: str = "/loras/ink.safetensors", **extra) -> ClusterConfig:
    model = {
        "source": "tiny:0",
        "native_resolution": 64,
        "schedulers": ["euler", "ddim"],
        "loras": [
            {"name": "ink", "source": lora_source, "scale": 0.8},
            {"name": "gloss", "source": lora_source, "fuse": True},
        ],
    }
    data = {"models": {"tiny": model, "plain": {"source": "tiny:1"}}}
    data["styles"] = {"sketch": "tiny", "photo": "plain"}
    return ClusterConfig.model_validate({**data, **extra})


def request(**changes) -> GenerateRequest:
    fields = dict(prompt="a red barn", width=64, height=64, steps=2, guidance=4.0, seed=5)
    return GenerateRequest(**{**fields, **changes})


# -- the config's allow-lists ---------------------------------------------------------------


def test_adapter_names_are_unique_per_model():
    twice = [{"name": "ink", "source": "/a"}, {"name": "ink", "source": "/b"}]
    with pytest.raises(ValidationError, match="adapter name 'ink' is used twice"):
        ModelConfig(source="tiny:0", loras=twice)


def test_schedulers_fit_unet_families_and_loras_diffusion_models():
    with pytest.raises(ValidationError, match="schedulers \\(euler\\) fit families sd and sdxl"):
        ModelConfig(source="tiny:0", family="flux", schedulers=["euler"])
    with pytest.raises(ValidationError, match="Input should be 'ddim', 'euler'"):
        ModelConfig(source="tiny:0", schedulers=["heun"])
    upscaler = {"source": "realesrgan:animevideov3-x4", "family": "upscaler", "upscaler": {}}
    with pytest.raises(ValidationError, match="loras apply to diffusion models"):
        ModelConfig(**upscaler, loras=[{"name": "ink", "source": "/a"}])
    assert ModelConfig(source="tiny:0", family="sd3", loras=[{"name": "a", "source": "/a"}])


def test_style_loras_name_allowed_adapters_of_the_style_model():
    assert cluster(style_loras={"sketch": [{"name": "ink"}]}).style_loras["sketch"][0].name
    with pytest.raises(ValidationError, match=r"style_loras.sketch\[0\].name 'gloss' is not"):
        cluster(style_loras={"sketch": [{"name": "gloss"}]})  # fused: always on, not chosen
    with pytest.raises(ValidationError, match=r"allowed: none"):
        cluster(style_loras={"photo": [{"name": "ink"}]})
    with pytest.raises(ValidationError, match="style_loras.nope: no such style"):
        cluster(style_loras={"nope": []})


# -- a request choosing ----------------------------------------------------------------------


def body(**fields) -> RenderRequestBody:
    return RenderRequestBody(prompt="a red barn", width=64, height=64, **fields)


def test_a_request_picks_a_scheduler_and_adapters_from_the_allow_lists():
    config = cluster()
    chosen = body(model="tiny", scheduler="euler", loras=[{"name": "ink"}])
    resolved = resolve_render(chosen, config)
    assert (resolved.request.scheduler, resolved.request.loras) == ("euler", (("ink", 0.8),))
    at = datetime.now(UTC)
    record = single_record(new_run_id(at), resolved, chosen, RecordLabels(), created_at=at)
    assert record.params["scheduler"] == "euler"
    assert record.params["loras"] == [{"name": "ink", "scale": 0.8}]
    plain = resolve_render(body(model="tiny", scheduler="default"), config)
    assert (plain.request.scheduler, plain.request.loras) == (None, ())
    plain_record = single_record(new_run_id(at), plain, body(), RecordLabels(), created_at=at)
    assert "scheduler" not in plain_record.params and "loras" not in plain_record.params


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"scheduler": "lms"}, "scheduler", "'lms' is not a scheduler this model allows"),
        ({"loras": [{"name": "gloss"}]}, "loras[0].name", "allowed: ink"),
        ({"loras": [{"name": "ink"}, {"name": "ink"}]}, "loras[1].name", "named twice"),
    ],
)
def test_a_choice_outside_the_allow_lists_is_refused_naming_the_field(fields, field, message):
    with pytest.raises(RequestError, match=message) as raised:
        resolve_render(body(model="tiny", **fields), cluster())
    assert raised.value.field == field


def test_fused_renders_take_neither():
    large = body(model="tiny", mode="fused", scheduler="euler")
    large = large.model_copy(update={"width": 256, "height": 128})
    with pytest.raises(RequestError) as raised:
        resolve_large(large, cluster(), "job", "out")
    assert raised.value.field == "scheduler"


def test_a_style_brings_its_adapters_unless_the_request_names_its_own():
    config = cluster(style_loras={"sketch": [{"name": "ink", "scale": 0.3}]})
    assert resolve_render(body(style="sketch"), config).request.loras == (("ink", 0.3),)
    chosen = resolve_render(body(style="sketch", loras=[]), config).request.loras
    assert chosen == ()
    assert resolve_render(body(model="tiny"), config).request.loras == ()


def test_every_tile_of_a_large_render_samples_as_the_request_chose():
    large = body(
        model="tiny", mode="hires", scheduler="ddim", loras=[{"name": "ink", "scale": 1.5}]
    )
    large = large.model_copy(update={"width": 256, "height": 128})
    job, _ = resolve_large(large, cluster(), "job", "out")
    tile = txt2img(job, 64, 64, seed=9)
    assert (tile.scheduler, tile.loras) == ("ddim", (("ink", 1.5),))


# -- real pixels -------------------------------------------------------------------------------


def test_a_switchable_adapter_changes_pixels_only_while_switched_on(lora_file, cache):
    config = cluster(str(lora_file)).models["tiny"]
    loaded = load_model(config, cache)
    assert (loaded.loras, loaded.fused_loras) == (("ink",), ("gloss",))
    assert loaded.describe()["loras"] == ["ink"] and loaded.describe()["fused_loras"] == ["gloss"]
    engine = RenderEngine(loaded, max_batch_size=1, fixed_batch_shape=False)
    off = engine.render([request()])[0].image
    on = engine.render([request(loras=(("ink", 1.0),))])[0].image
    half = engine.render([request(loras=(("ink", 0.5),))])[0].image
    again = engine.render([request()])[0].image
    assert not np.array_equal(off, on) and not np.array_equal(on, half)
    assert np.array_equal(off, again)  # switched off again after the render that used it
    only_fused = ModelConfig(
        source="tiny:0", loras=[{"name": "gloss", "source": str(lora_file), "fuse": True}]
    )
    fused_engine = RenderEngine(load_model(only_fused, cache), 1, fixed_batch_shape=False)
    assert np.array_equal(fused_engine.render([request()])[0].image, off)  # gloss is fused in both
    bare = RenderEngine(load_model(ModelConfig(source="tiny:0"), cache), 1, fixed_batch_shape=False)
    assert not np.array_equal(bare.render([request()])[0].image, off)


def test_a_request_scheduler_samples_as_a_model_configured_with_it(cache):
    allowed = RenderEngine(
        load_model(ModelConfig(source="tiny:0", schedulers=["euler"]), cache), 1, False
    )
    configured = RenderEngine(
        load_model(ModelConfig(source="tiny:0", scheduler="euler"), cache), 1, False
    )
    own = allowed.render([request()])[0].image
    chosen = allowed.render([request(scheduler="euler")])[0].image
    assert np.array_equal(chosen, configured.render([request()])[0].image)
    assert not np.array_equal(own, chosen)
    assert np.array_equal(own, allowed.render([request()])[0].image)  # its own one untouched
    assert type(allowed.model.txt2img.scheduler).__name__ == "PNDMScheduler"
