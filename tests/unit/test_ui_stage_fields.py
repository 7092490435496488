"""The re-run form's fields: a stage's own, typed and bounded by `StageConfig` itself."""

from __future__ import annotations

import pytest

from core.errors import RequestError
from core.pipelines import StageConfig
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
