"""Request rules of fused renders, and "any size means any size" for every large mode."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from core.campaign import expand_manifest, parse_manifest
from core.campaign.plan import job_problems
from core.config_file import parse_config
from core.errors import ConfigError, RequestError
from core.schemas import RenderRequestBody
from core.validation import is_large, resolve_large, resolve_render

CONFIG = """
models:
  quality: {source: "tiny:0", native_resolution: 256}
  xl: {source: "tiny:2", family: sdxl, native_resolution: 1024}
  flux: {source: "tiny:3", family: flux, native_resolution: 1024, latent_factor: 16}
limits: {max_width: 32768, max_height: 32768, max_pixels: 268435456, max_steps: 50}
"""


@pytest.fixture
def config():
    return parse_config(CONFIG)


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _large(config, **fields):
    body = RenderRequestBody(**({"prompt": "a harbour", "model": "quality"} | fields))
    return resolve_large(body, config, "job-1", "renders/job-1/image.png")[0]


def test_a_fused_request_becomes_a_fused_job(config):
    body = RenderRequestBody(prompt="a harbour", model="quality", width=256, height=256)
    assert not is_large(body, config)
    assert is_large(body.model_copy(update={"mode": "fused"}), config)
    job = _large(config, mode="fused", width=2048, height=512)
    assert (job.mode, job.fuse, job.overlap, job.base_image) == ("fused", "gaussian", None, None)
    uniform = _large(config, mode="fused", fuse="uniform", width=2048, height=512, overlap=224)
    assert (uniform.fuse, uniform.overlap) == ("uniform", 224)
    xl = _large(config, model="xl", mode="fused", width=8192, height=8192)
    assert (xl.tile_size, xl.align) == (1024, 8)
    assert (job.tiles_per_call, job.replica_requests) == (2, 4)  # 2 tiles a call, per the bench


def test_fused_tiles_go_one_per_call_where_two_are_over_the_call_limit():
    capped = parse_config(
        CONFIG.replace(
            "native_resolution: 256}", "native_resolution: 256, max_pixels_per_call: 100000}", 1
        )
    )
    job = _large(capped, mode="fused", width=1000, height=300)
    assert job.tiles_per_call == 1  # 2 x 256 x 256 > 100000


def test_fused_img2img_takes_a_base_image_at_img2img_strength(config):
    job = _large(config, mode="fused", width=1000, height=300, base_image=_png(100, 30))
    assert job.base_image.shape == (30, 100, 3) and job.strength == 0.75
    assert _large(config, mode="fused", width=1000, height=300, strength=0.4).strength == 0.4
    assert _large(config, mode="hires", width=1000, height=300).strength == 0.35


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"model": "flux"}, "mode", "model 'flux' is family 'flux'"),
        ({"overlap": 100}, "overlap", "multiple of 8"),
        ({"overlap": 256}, "overlap", "at most 248"),
        ({"mode": "hires", "fuse": "uniform"}, "fuse", "only used by fused"),
        ({"mode": "tiled", "base_image": "AAAA"}, "base_image", "not 'tiled'"),
    ],
)
def test_bad_fused_requests_name_the_field(config, fields, field, fragment):
    with pytest.raises(RequestError) as raised:
        _large(config, **({"mode": "fused", "width": 1000, "height": 300} | fields))
    assert raised.value.field == field and fragment in raised.value.message


@pytest.mark.parametrize("mode", ["hires", "tiled", "fused"])
@pytest.mark.parametrize("size", [(1500, 619), (14173, 4724), (257, 9)])
def test_every_large_mode_takes_any_size(config, mode, size):
    job = _large(config, mode=mode, width=size[0], height=size[1])
    assert (job.width, job.height) == size


def test_single_pass_renders_keep_the_latent_grid_with_its_help(config):
    body = RenderRequestBody(prompt="a", model="quality", width=250, height=256, mode="single")
    with pytest.raises(RequestError, match="nearest valid sizes are 248 and 256"):
        resolve_render(body, config)
    with pytest.raises(RequestError, match="only used by fused"):
        resolve_render(body.model_copy(update={"width": 256, "fuse": "gaussian"}), config)
    with pytest.raises(RequestError, match="at least 8"):
        _large(config, mode="hires", width=7, height=300)


PIPELINE = """
pipelines:
  poster:
    stages:
      - {name: base, model: quality, width: BASE, height: 128, steps: 2}
      - {name: hires, kind: hires, model: quality, width: 1500, height: 619, consumes: [previous]}
"""


def test_a_hires_stage_and_a_large_campaign_size_take_any_size(config):
    staged = parse_config(CONFIG + PIPELINE.replace("BASE", "256"))
    assert (staged.pipelines["poster"].stages[1].width, staged.models) == (1500, config.models)
    with pytest.raises(ConfigError, match="width 250 is not a multiple"):
        parse_config(CONFIG + PIPELINE.replace("BASE", "250"))
    manifest = parse_manifest(
        "campaign: print\nitems:\n  - {id: a, prompt: a poster, model: quality, "
        "sizes: [14173x4724]}\n",
        "yaml",
    )
    (job,) = expand_manifest(manifest, config)
    assert (job.width, job.height, job_problems(job, config)) == (14173, 4724, [])
