"""A model's `hires.refine_strength`: its hires renders' per-tile refine strength.

Unset, hires renders refine at `tiling.refine_strength`; a request's (or a hires
stage's) strength wins. 0 keeps the upscaled base as it is: the tiles make no
model call, for a model whose refine cannot add detail at the enlarged scale.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from actors.pipeline_state import stage_params
from core.config import ClusterConfig
from core.config_file import parse_config
from core.errors import ConfigError, RequestError
from core.largeformat.fanout import JobProgress
from core.largeformat.job_context import JobContext
from core.largeformat.refine import render_large
from core.schemas import RenderRequestBody
from core.store import LocalStore
from core.validation import resolve_large

CONFIG = """
models:
  quality: {source: "tiny:0", native_resolution: 64}
  flat: {source: "tiny:1", native_resolution: 64, hires: {refine_strength: 0}}
limits: {max_width: 4096, max_height: 4096, max_pixels: 16777216, max_steps: 50}
"""


@pytest.fixture
def config() -> ClusterConfig:
    return parse_config(CONFIG)


def _job(config: ClusterConfig, **fields):
    body = {"prompt": "a pier", "width": 256, "height": 128, "mode": "hires", "seed": 3}
    request = RenderRequestBody(**(body | fields))
    job, _ = resolve_large(request, config, "20260101-000000-000000-00000000", "renders/x.png")
    return job


def test_unset_is_the_tiling_default_and_a_request_wins(config):
    assert _job(config, model="quality").strength == 0.35
    assert _job(config, model="flat").strength == 0.0
    assert _job(config, model="flat", strength=0.2).strength == 0.2


def test_no_refine_needs_no_denoising_step(config):
    assert _job(config, model="flat", steps=1).strength == 0.0
    with pytest.raises(RequestError) as refused:
        _job(config, model="quality", steps=2)
    assert refused.value.field == "steps" and "2 x 0.35" in refused.value.message


def test_a_hires_stage_takes_its_models_strength_and_its_own_wins():
    pipeline = (
        "pipelines:\n  p:\n    stages:\n"
        "      - {name: draft, kind: render, model: flat, width: 64, height: 64}\n"
        "      - {name: big, kind: hires, model: flat, width: 256, height: 128, "
        "consumes: [previous]STRENGTH}\n"
    )
    for strength, expected in (("", 0.0), (", strength: 0.3", 0.3)):
        config = parse_config(CONFIG + pipeline.replace("STRENGTH", strength))
        stage = config.pipelines["p"].stages[1]
        assert stage_params(config, stage, config.models["flat"])["strength"] == expected


def test_the_config_refuses_a_strength_past_one():
    with pytest.raises(ConfigError) as refused:
        parse_config(CONFIG.replace("refine_strength: 0", "refine_strength: 1.5"))
    assert (
        "models.flat.hires.refine_strength (line 4): Input should be less than or equal to 1"
        in str(refused.value)
    )


def test_strength_zero_renders_the_upscaled_base_with_no_tile_call(config, tmp_path):
    base = np.zeros((64, 128, 3), np.uint8)
    base[16:48, 32:96] = (220, 40, 40)
    job = _job(config, model="flat")
    job.base_image = base
    calls = []

    async def model(request):
        calls.append(request)
        raise AssertionError("no tile may call the model")

    store = LocalStore(tmp_path / "store")
    ctx = JobContext(job.job_id, model, store, tmp_path / "spool", JobProgress())
    result = asyncio.run(render_large(job, ctx))
    assert calls == [] and result.tiles > 1
    image = np.asarray(Image.open(io.BytesIO(store.get_bytes(job.output_key))).convert("RGB"))
    expected = np.asarray(Image.fromarray(base).resize((256, 128), Image.Resampling.LANCZOS))
    assert image.shape == (128, 256, 3)
    assert np.abs(image.astype(int) - expected).max() <= 1
