"""The 'remote' model family in the cluster config: the issue's shape, defaults, strictness."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from pydantic import ValidationError

from core.config import ClusterConfig, ModelConfig
from core.config_file import parse_config
from core.errors import ConfigError, RequestError
from core.model_source import parse_source
from core.render_records import RecordLabels, large_record
from core.schemas import RenderRequestBody
from core.validation import is_large, resolve_large

ISSUE_YAML = """
models:
  layout-ideogram:
    family: remote
    remote:
      provider: ideogram        # openai | ideogram | imagen | gemini
      model: V_2                # the provider's model id
      base_url: null            # default: the provider's public endpoint
      api_key_env: IDEOGRAM_API_KEY
      max_concurrency: 4        # calls in flight to the provider
      requests_per_minute: 60
      timeout_s: 120
      cost_per_image: 0.08      # in USD, recorded with every image
  quality: {source: "tiny:0", native_resolution: 256}
styles: {layout: layout-ideogram}
"""


def hosted(**remote) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "family": "remote",
            "remote": {"provider": "imagen", "model": "imagen-4.0-generate-001", **remote},
        }
    )


def test_the_issue_s_config_loads_with_hosted_defaults():
    config = parse_config(ISSUE_YAML, source="issue")
    model = config.models["layout-ideogram"]
    assert model.source == "remote:ideogram/V_2" and model.family == "remote"
    assert (model.gpus_per_replica, model.latent_factor, model.native_resolution) == (0, 1, 1024)
    remote = model.remote
    assert (remote.provider, remote.model, remote.base_url, remote.key_env) == (
        "ideogram", "V_2", None, "IDEOGRAM_API_KEY"
    )  # fmt: skip
    assert (remote.max_concurrency, remote.requests_per_minute, remote.timeout_s) == (4, 60, 120)
    assert remote.cost_per_image == 0.08
    assert parse_source(model.source).revision == "V_2"


def test_the_key_variable_defaults_to_the_provider_s_convention():
    assert hosted().remote.key_env == "GEMINI_API_KEY"
    assert hosted(api_key_env="MY_KEY").remote.key_env == "MY_KEY"


OPENAI = {"provider": "openai", "model": "dall-e-3"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"family": "remote"}, "family 'remote' needs a 'remote' section"),
        ({"family": "remote", "gpus_per_replica": 1, "remote": OPENAI}, "books no GPU"),
        ({"source": "tiny", "remote": OPENAI}, "a 'remote' section needs family 'remote'"),
        ({"source": "remote:openai/dall-e-3"}, "is a hosted model: set family 'remote'"),
        (
            {"family": "remote", "source": "remote:openai/x", "remote": OPENAI},
            "a hosted model's source is 'remote:openai/dall-e-3'",
        ),
        ({"family": "remote", "remote": {"provider": "midjourney", "model": "v6"}}, "provider"),
        (
            {"family": "remote", "remote": {**OPENAI, "api_key": "sk-1"}},
            "Extra inputs are not permitted",
        ),
        ({"family": "remote", "remote": {**OPENAI, "api_key_env": "lower"}}, "api_key_env"),
        ({"family": "remote", "remote": {**OPENAI, "max_concurrency": 0}}, "max_concurrency"),
        ({"family": "remote", "remote": {**OPENAI, "timeout_s": 0}}, "timeout_s"),
    ],
)
def test_inconsistent_or_unknown_entries_are_refused(entry, message):
    with pytest.raises(ValidationError, match=message):
        ModelConfig.model_validate(entry)


def test_a_hires_stage_on_a_hosted_model_is_refused():
    bad = (
        ISSUE_YAML
        + """
pipelines:
  p:
    stages:
      - {name: base, model: layout-ideogram, width: 512, height: 256}
      - {name: big, kind: hires, model: layout-ideogram, width: 1024, height: 512,
         consumes: [previous]}
"""
    )
    with pytest.raises(ConfigError, match="model 'layout-ideogram' is hosted; a hires stage"):
        parse_config(bad, source="bad")


def test_hosted_renders_are_one_call_at_any_size_and_large_modes_are_refused():
    config: ClusterConfig = parse_config(ISSUE_YAML, source="issue")
    body = RenderRequestBody(prompt="x", model="layout-ideogram", width=3000, height=1003)
    assert not is_large(body, config)  # one provider call, resized to exact
    hires = body.model_copy(update={"mode": "hires"})
    assert is_large(hires, config)
    with pytest.raises(RequestError, match="is hosted: large renders refine tile by tile"):
        resolve_large(hires, config, "20250101-120000-000000-1a2b3c4d", "out.png")


REFINED_YAML = ISSUE_YAML.replace(
    "      cost_per_image: 0.08      # in USD, recorded with every image\n",
    "      cost_per_image: 0.08      # in USD, recorded with every image\n"
    "      refine_model: quality\n",
)


@pytest.mark.parametrize(
    ("refiner", "message"),
    [
        ("nope", "models.layout-ideogram.remote.refine_model 'nope' is not a model"),
        ("layout-ideogram", "must be a local image model, not family 'remote'"),
    ],
)
def test_a_refine_model_must_be_a_local_model_of_the_cluster(refiner, message):
    bad = REFINED_YAML.replace("refine_model: quality", f"refine_model: {refiner}")
    with pytest.raises(ConfigError, match=message):
        parse_config(bad, source="bad")


def test_a_large_render_on_a_hosted_model_draws_the_base_there_and_refines_locally():
    config: ClusterConfig = parse_config(REFINED_YAML, source="issue")
    body = RenderRequestBody(
        prompt="x", model="layout-ideogram", width=1500, height=619, mode="hires", steps=4
    )
    job, model = resolve_large(body, config, "20250101-120000-000000-1a2b3c4d", "out.png")
    assert (job.base_model_name, job.model_name) == ("layout-ideogram", "quality")
    assert (job.base_resolution, job.native_resolution, job.tile_size) == (1024, 256, 256)
    assert model.family == "remote"  # the record names the model asked for
    record = large_record(job, model, body, RecordLabels())
    assert record.model == "layout-ideogram" and record.params["refine_model"] == "quality"
    fused = body.model_copy(update={"mode": "fused"})
    assert resolve_large(fused, config, "j", "out.png")[0].base_model_name == "layout-ideogram"
    tiled = body.model_copy(update={"mode": "tiled"})
    with pytest.raises(RequestError, match="'tiled' draws every tile locally from noise"):
        resolve_large(tiled, config, "j", "out.png")


def test_a_supplied_base_on_a_hosted_model_never_calls_it():
    config: ClusterConfig = parse_config(REFINED_YAML, source="issue")
    base = base64.b64encode(_png(300, 124)).decode()
    body = RenderRequestBody(
        prompt="x", model="layout-ideogram", width=1500, height=619, mode="hires", steps=4,
        base_image=base,
    )  # fmt: skip
    job, model = resolve_large(body, config, "20250101-120000-000000-1a2b3c4d", "out.png")
    assert job.base_model_name is None and job.model_name == "quality"
    assert model.family == "sd"  # the record names the model that drew every pixel


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 40, 60)).save(buffer, "PNG")
    return buffer.getvalue()
