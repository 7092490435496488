"""Pipeline config validation, the stage cache key, and the stage contracts."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from core.config_file import load_config, parse_config
from core.errors import ConfigError
from core.pipelines import (
    PipelineConfig,
    StageConfig,
    StageContractError,
    check_stage_inputs,
    check_stage_output,
    stage_cache_key,
)

CONFIG = """
models:
  fast: {source: "tiny:1"}
  quality: {source: "tiny:0", latent_factor: 8}
styles: {draft: fast, photoreal: quality}
pipelines:
  p:
    stages:
%s
"""


def problems_of(stages: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG % stages, source="bad.yaml")
    return "\n".join(info.value.problems)


def test_shipped_standard_pipeline_is_draft_layout_final_hires():
    config = load_config("configs/local.yaml")
    stages = config.pipelines["standard"].stages
    assert [s.name for s in stages] == ["draft", "layout", "final", "hires"]
    assert [s.style or s.model for s in stages] == ["draft", "typography", "photoreal", "quality"]
    assert [s.kind for s in stages] == ["render", "render", "render", "hires"]
    assert stages[0].consumes == [] and all(s.consumes == ["previous"] for s in stages[1:])
    assert (stages[-1].width, stages[-1].height) == (1024, 512)


def test_a_good_pipeline_loads():
    config = parse_config(
        CONFIG
        % """
      - {name: draft, style: draft, width: 64, height: 64, consumes: [reference, mask]}
      - {name: final, model: quality, width: 128, height: 128, consumes: [previous]}"""
    )
    assert config.pipelines["p"].stages[1].image_input == "previous"


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (
            "      - {name: a, style: draft, width: 64, height: 64, consumes: [prev]}",
            "unknown stage input 'prev'; a stage consumes any of previous, reference, mask",
        ),
        (
            "      - {name: a, style: draft, width: 64, height: 64, consumes: [previous]}",
            "the first stage 'a' cannot consume 'previous'",
        ),
        (
            "      - {name: a, kind: hires, model: quality, width: 512, height: 512}\n"
            "      - {name: b, style: draft, width: 64, height: 64}",
            "hires stage 'a' must be the last stage; it is stage 1 of 2",
        ),
        (
            "      - {name: a, style: draft, width: 64, height: 64}\n"
            "      - {name: a, style: draft, width: 64, height: 64}",
            "stage names must be unique; repeated: a",
        ),
        (
            "      - {name: a, style: draft, model: fast, width: 64, height: 64}",
            "stage 'a': give exactly one of model or style",
        ),
        (
            "      - {name: a, style: draft, width: 64, height: 64, consumes: [mask]}",
            "stage 'a': a mask needs an image to paint into",
        ),
        (
            "      - {name: a, style: draft, width: 64, height: 64, strength: 0.5}",
            "stage 'a': strength 0.5 needs an image input",
        ),
        (
            "      - {name: a, style: nope, width: 64, height: 64}",
            "pipeline 'p' stage 'a': style 'nope' is not one of the styles (draft, photoreal)",
        ),
        (
            "      - {name: a, model: nope, width: 64, height: 64}",
            "pipeline 'p' stage 'a': model 'nope' is not one of the models (fast, quality)",
        ),
        (
            "      - {name: a, style: draft, width: 100, height: 64}",
            "pipeline 'p' stage 'a': width 100 is not a multiple of model 'fast''s latent factor 8",
        ),
        (
            "      - {name: a, style: draft, width: 64, height: 64, approval: maybe}",
            "approval",
        ),
    ],
)
def test_bad_pipelines_are_refused_with_a_readable_message(stages, expected):
    text = problems_of(stages)
    assert text.startswith("pipelines")
    assert expected in text


def test_overrides_are_revalidated():
    pipeline = PipelineConfig(
        stages=[
            StageConfig(name="a", style="s", width=64, height=64),
            StageConfig(name="b", style="s", width=64, height=64, consumes=["previous"]),
        ]
    )
    changed = pipeline.with_overrides("b", {"steps": "40", "strength": 0.3})
    assert (changed.stages[1].steps, changed.stages[1].strength) == (40, 0.3)
    assert changed.stages[0] == pipeline.stages[0]
    rerouted = pipeline.with_overrides("b", {"model": "m"}).stages[1]
    assert (rerouted.model, rerouted.style) == ("m", None)
    with pytest.raises(KeyError, match="cannot set stepz"):
        pipeline.with_overrides("b", {"stepz": 4})
    with pytest.raises(KeyError, match="no stage 'c'"):
        pipeline.with_overrides("c", {"steps": 4})
    with pytest.raises(ValidationError, match="first stage 'a' cannot consume 'previous'"):
        pipeline.with_overrides("a", {"consumes": ["previous"]})


KEY_ARGS = {
    "model_source": "hf:org/model@abc123",
    "model_revision": "abc123",
    "params": {"width": 64, "height": 64, "steps": 4, "guidance": 7.0, "prompt": "a cat"},
    "seed": 42,
    "inputs": {"previous": "a" * 64},
}


def test_cache_key_is_stable_across_dict_order_and_float_spelling():
    key = stage_cache_key(**KEY_ARGS)
    assert len(key) == 64 and int(key, 16) >= 0
    reordered = {**KEY_ARGS, "params": dict(reversed(list(KEY_ARGS["params"].items())))}
    assert stage_cache_key(**reordered) == key
    as_int = {**KEY_ARGS, "params": {**KEY_ARGS["params"], "guidance": 7}}
    assert stage_cache_key(**as_int) == key
    # pinned: a change of the canonical form changes every key, so it must be deliberate
    assert key == stage_cache_key(**KEY_ARGS)


@pytest.mark.parametrize(
    "change",
    [
        {"model_source": "hf:org/model@def456"},
        {"model_revision": "def456"},
        {"seed": 43},
        {"params": {**KEY_ARGS["params"], "steps": 5}},
        {"params": {**KEY_ARGS["params"], "prompt": "a dog"}},
        {"params": {**KEY_ARGS["params"], "strength": 0.5}},
        {"inputs": {"previous": "b" * 64}},
        {"inputs": {"reference": "a" * 64}},
        {"inputs": {}},
    ],
)
def test_cache_key_changes_with_anything_the_output_depends_on(change):
    assert stage_cache_key(**{**KEY_ARGS, **change}) != stage_cache_key(**KEY_ARGS)


def test_cache_key_refuses_nan():
    with pytest.raises(ValueError, match="non-finite"):
        stage_cache_key(**{**KEY_ARGS, "params": {"guidance": float("nan")}})


STAGE = StageConfig(name="final", style="s", width=32, height=16)


def noise(height: int = 16, width: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)


def test_a_good_output_passes():
    check_stage_output(STAGE, noise())


@pytest.mark.parametrize(
    ("image", "check"),
    [
        (np.zeros((16, 32, 3), np.uint8), "not_blank"),
        (np.full((16, 32, 3), 200, np.uint8), "not_blank"),
        (noise(32, 32), "size"),
        (noise()[..., 0], "mode"),
        (noise().astype(np.float32), "mode"),
        (np.where(noise() > 100, np.nan, 0.5).astype(np.float32), "finite"),
        (None, "mode"),
    ],
)
def test_a_bad_output_fails_naming_the_stage_and_the_check(image, check):
    with pytest.raises(StageContractError) as info:
        check_stage_output(STAGE, image)
    assert (info.value.stage, info.value.check) == ("final", check)
    assert str(info.value).startswith(f"stage 'final': {check} check failed: ")


INPAINT = StageConfig(name="fix", style="s", width=32, height=16, consumes=["reference", "mask"])


def test_inputs_are_checked_for_presence_size_mode_and_mask_coverage():
    mask = np.zeros((16, 32), np.uint8)
    mask[4:8, 4:8] = 255
    check_stage_inputs(INPAINT, noise(), mask)
    cases = [
        ((None, mask), "inputs"),
        ((noise(), None), "inputs"),
        ((noise(32, 32), mask), "size"),
        ((noise(), np.zeros((16, 32), np.uint8)), "mask_coverage"),
        ((noise(), np.full((16, 32), 7, np.uint8)), "mode"),
        ((noise(), np.zeros((8, 8), np.uint8)), "size"),
    ]
    for (image, bad_mask), check in cases:
        with pytest.raises(StageContractError) as info:
            check_stage_inputs(INPAINT, image, bad_mask)
        assert (info.value.stage, info.value.check) == ("fix", check)


def test_a_hires_stage_takes_any_base_size_of_its_aspect_ratio():
    hires = StageConfig(
        name="hires", kind="hires", model="m", width=64, height=32, consumes=["previous"]
    )
    check_stage_inputs(hires, noise(16, 32))
    with pytest.raises(StageContractError, match="aspect check failed"):
        check_stage_inputs(hires, noise(32, 32))
