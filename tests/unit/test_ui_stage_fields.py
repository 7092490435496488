"""The re-run form's fields: a stage's own, typed and bounded by `StageConfig` itself."""

from __future__ import annotations

import re

import pytest

from core.config import ClusterConfig
from core.errors import RequestError
from core.lora_options import LoraChoice
from core.pipelines import StageConfig
from serve.ui.data import stage_choices
from serve.ui.stage_fields import parse, stage_fields

ROUTES = {"model": ["tiny", "quality"], "style": ["poster"]}


def _by_name(stage: StageConfig) -> dict:
    return {field.name: field for field in stage_fields(stage, ROUTES)}


def test_a_stage_offers_its_own_fields_with_the_schemas_types_bounds_and_values():
    draft = StageConfig(name="draft", model="tiny", width=96, height=64, steps=4)
    fields = _by_name(draft)
    assert list(fields) == [
        *("model", "style", "width", "height", "steps", "guidance", "seed", "quiet_zone")
    ]  # txt2img: no strength
    assert fields["width"].kind == "int" and fields["width"].current == 96
    assert (fields["width"].minimum, fields["width"].maximum) == (8, 262144)
    assert fields["steps"].current == 4 and fields["guidance"].kind == "float"
    assert fields["guidance"].current is None  # the model's default
    assert fields["model"].choices == ("tiny", "quality") and fields["model"].current == "tiny"
    assert fields["quiet_zone"].choices == ("prompt", "inpaint")
    assert fields["seed"].help.startswith("Seed of this stage")


def test_a_stage_that_starts_from_an_image_offers_strength_and_hires_does_too():
    final = StageConfig(name="final", model="tiny", width=96, height=64, consumes=["previous"])
    strength = _by_name(final)["strength"]
    assert strength.kind == "float" and (strength.minimum, strength.maximum) == (0, 1)
    hires = StageConfig(name="big", model="tiny", kind="hires", width=512, height=512)
    assert "strength" in _by_name(hires)


def test_the_form_becomes_typed_overrides_and_bad_values_name_their_field():
    fields = stage_fields(StageConfig(name="s", model="tiny", width=96, height=64), ROUTES)
    form = {"steps": " 7 ", "guidance": "4.5", "model": "quality", "seed": "", "other": "x"}
    assert parse(fields, form) == {"steps": 7, "guidance": 4.5, "model": "quality"}
    with pytest.raises(RequestError) as bad:
        parse(fields, {"steps": "many"})
    assert bad.value.field == "steps"
    with pytest.raises(RequestError) as unknown:
        parse(fields, {"model": "someone-elses"})
    assert unknown.value.field == "model"


def _sampling_config() -> ClusterConfig:
    tiny = {
        "source": "tiny:0",
        "native_resolution": 64,
        "schedulers": ["euler", "ddim"],
        "loras": [
            {"name": "ink", "source": "/loras/ink.safetensors", "scale": 0.8},
            {"name": "glaze", "source": "/loras/glaze.safetensors", "fuse": True},
        ],
    }
    plain = {"source": "tiny:1", "native_resolution": 64}
    return ClusterConfig.model_validate(
        {"models": {"tiny": tiny, "plain": plain}, "styles": {"sketch": "tiny"}}
    )


def test_a_stage_offers_the_schedulers_and_adapters_its_own_model_allows():
    config = _sampling_config()
    sketched = StageConfig(name="s", style="sketch", width=64, height=64, scheduler="ddim")
    fields = {
        field.name: field for field in stage_fields(sketched, stage_choices(config, sketched))
    }
    assert fields["scheduler"].choices == ("default", "euler", "ddim")
    assert fields["scheduler"].current == "ddim"
    assert fields["loras"].kind == "adapters" and fields["loras"].choices == ("ink",)  # not fused
    assert fields["loras"].current is None and "Allowed: ink;" in fields["loras"].help
    chosen = StageConfig(name="s", model="tiny", width=64, height=64, loras=[{"name": "ink"}])
    assert _by_name_in(config, chosen)["loras"].current == "ink"
    scaled = chosen.model_copy(update={"loras": [LoraChoice(name="ink", scale=0.25)]})
    assert _by_name_in(config, scaled)["loras"].current == "ink:0.25"
    assert _by_name_in(config, chosen.model_copy(update={"loras": []}))["loras"].current == "none"
    plain = StageConfig(name="s", model="plain", width=64, height=64)
    assert "scheduler" not in _by_name_in(config, plain) and "loras" not in _by_name_in(
        config, plain
    )


def _by_name_in(config: ClusterConfig, stage: StageConfig) -> dict:
    return {field.name: field for field in stage_fields(stage, stage_choices(config, stage))}


def test_adapters_are_written_name_or_name_scale_and_none_clears_them():
    config = _sampling_config()
    stage = StageConfig(name="s", model="tiny", width=64, height=64)
    fields = stage_fields(stage, stage_choices(config, stage))
    assert parse(fields, {"loras": "ink"}) == {"loras": [{"name": "ink"}]}
    assert parse(fields, {"loras": " ink : 0.5 ,"}) == {"loras": [{"name": "ink", "scale": 0.5}]}
    assert parse(fields, {"loras": "None"}) == {"loras": []}
    assert parse(fields, {"scheduler": "euler"}) == {"scheduler": "euler"}
    for text, message in [
        ("glaze", "'glaze' is not one of the adapters (ink)"),
        ("ink:strong", "'strong' is not a number (name:scale)"),
    ]:
        with pytest.raises(RequestError, match=re.escape(message)) as bad:
            parse(fields, {"loras": text})
        assert bad.value.field == "loras"
    with pytest.raises(RequestError) as unknown:
        parse(fields, {"scheduler": "lms"})
    assert unknown.value.field == "scheduler"
