"""Which upscaler a hires render's base goes through: config, request, pipeline stage, record.

A model's `hires.upscaler` ('lanczos' by default) is its hires renders' default; a
request's `hires_upscaler` (or a hires stage's) wins. Naming anything but 'lanczos'
or a model of family 'upscaler' fails naming the field.
"""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from actors.pipeline_state import stage_params
from core.config import ClusterConfig
from core.config_file import parse_config
from core.errors import RequestError
from core.render_records import RecordLabels, large_record
from core.schemas import HiresUpscaler, RenderRequestBody
from core.validation import resolve_large, resolve_render

CONFIG = """
models:
  quality: {source: "tiny:0", native_resolution: 256}
  sharp: {source: "tiny:1", native_resolution: 256, hires: {upscaler: esrgan}}
  esrgan:
    source: "realesrgan:animevideov3-x2"
    family: upscaler
    upscaler: {scale: 2, tile_size: 64, context_padding: 6}
    max_ongoing_requests: 3
limits: {max_width: 4096, max_height: 4096, max_pixels: 16777216, max_steps: 50}
"""


@pytest.fixture
def config() -> ClusterConfig:
    return parse_config(CONFIG)


def _large(config: ClusterConfig, **fields):
    body = RenderRequestBody(
        **({"prompt": "a pier", "width": 1024, "height": 512, "mode": "hires"} | fields)
    )
    job, model = resolve_large(body, config, "20260101-000000-000000-00000000", "renders/x.png")
    return job, large_record(job, model, body, RecordLabels())


ESRGAN = HiresUpscaler("esrgan", scale=2, tile_size=64, padding=6, replica_requests=3)


def test_lanczos_is_the_default_and_the_record_says_so(config):
    job, record = _large(config, model="quality")
    assert job.upscaler is None
    assert record.params["hires_upscaler"] == "lanczos"


def test_a_models_upscaler_is_its_hires_default_and_a_request_wins(config):
    job, record = _large(config, model="sharp")
    assert job.upscaler == ESRGAN
    assert record.params["hires_upscaler"] == "esrgan"
    job, record = _large(config, model="sharp", hires_upscaler="lanczos")
    assert (job.upscaler, record.params["hires_upscaler"]) == (None, "lanczos")
    job, record = _large(config, model="quality", hires_upscaler="esrgan")
    assert (job.upscaler, record.params["hires_upscaler"]) == (ESRGAN, "esrgan")


def test_auto_renders_that_go_hires_use_the_upscaler(config):
    job, record = _large(config, model="sharp", mode="auto")
    assert (job.mode, job.upscaler) == ("hires", ESRGAN)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("nope", "'nope' is not a model; use 'lanczos' or an upscaler model (esrgan)"),
        ("quality", "model 'quality' is family 'sd', not an upscaler"),
    ],
)
def test_a_request_naming_no_upscaler_fails_naming_the_field(config, name, fragment):
    with pytest.raises(RequestError) as raised:
        _large(config, model="quality", hires_upscaler=name)
    assert raised.value.field == "hires_upscaler"
    assert fragment in raised.value.message


@pytest.mark.parametrize("mode", ["tiled", "fused"])
def test_other_large_modes_refuse_an_upscaler_and_ignore_the_models(config, mode):
    with pytest.raises(RequestError, match="only used by hires renders") as raised:
        _large(config, model="quality", mode=mode, hires_upscaler="esrgan")
    assert raised.value.field == "hires_upscaler"
    job, record = _large(config, model="sharp", mode=mode)
    assert job.upscaler is None and "hires_upscaler" not in record.params


def test_one_call_renders_refuse_it_with_single_and_check_it_with_auto(config):
    small = {"prompt": "a pier", "model": "quality", "width": 256, "height": 256}
    with pytest.raises(RequestError, match="not mode 'single'"):
        resolve_render(RenderRequestBody(**small, mode="single", hires_upscaler="esrgan"), config)
    with pytest.raises(RequestError, match="'nope' is not a model") as raised:
        resolve_render(RenderRequestBody(**small, hires_upscaler="nope"), config)
    assert raised.value.field == "hires_upscaler"
    resolved = resolve_render(RenderRequestBody(**small, hires_upscaler="esrgan"), config)
    assert resolved.request.width == 256


@pytest.mark.parametrize(
    ("upscaler", "fragment"),
    [
        ("missing", "models.quality.hires.upscaler: 'missing' is not a model"),
        ("sharp", "models.quality.hires.upscaler: model 'sharp' is family 'sd', not an upscaler"),
    ],
)
def test_the_config_refuses_a_hires_upscaler_that_is_no_upscaler(upscaler, fragment):
    text = CONFIG.replace(
        'quality: {source: "tiny:0", native_resolution: 256}',
        f'quality: {{source: "tiny:0", native_resolution: 256, hires: {{upscaler: {upscaler}}}}}',
    )
    with pytest.raises(ValidationError, match=fragment):
        ClusterConfig.model_validate(_data(text))


def _data(text: str) -> dict:
    return yaml.safe_load(text)


def _pipeline(stage: str) -> str:
    return CONFIG + (
        "pipelines:\n  p:\n    stages:\n"
        "      - {name: final, model: quality, width: 256, height: 128}\n"
        "      - {name: big, kind: hires, width: 1024, height: 512, consumes: [previous], "
        f"{stage}}}\n"
    )


def test_a_hires_stage_takes_an_upscaler_or_its_models_and_keys_on_it():
    config = parse_config(_pipeline("model: sharp"))
    stage = config.pipelines["p"].stages[1]
    assert stage_params(config, stage, config.models["sharp"])["hires_upscaler"] == "esrgan"
    config = parse_config(_pipeline("model: sharp, hires_upscaler: lanczos"))
    stage = config.pipelines["p"].stages[1]
    assert stage_params(config, stage, config.models["sharp"])["hires_upscaler"] == "lanczos"


def test_a_stage_naming_no_upscaler_or_a_render_stage_naming_one_is_refused():
    with pytest.raises(ValidationError, match="stage 'big': hires_upscaler 'fast' is not a model"):
        ClusterConfig.model_validate(_data(_pipeline("model: quality, hires_upscaler: fast")))
    render_stage = _pipeline("model: quality").replace(
        "width: 256, height: 128}", "width: 256, height: 128, hires_upscaler: esrgan}"
    )
    with pytest.raises(ValidationError, match="hires_upscaler is only used by hires stages"):
        ClusterConfig.model_validate(_data(render_stage))
