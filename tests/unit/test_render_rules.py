"""The rules every render caller shares: what is 'large', and the per-call pixel limit.

Before one path existed the API called 320x192 on a 256-native model large (a side
over native) while a campaign rendered it in one call (area under 1.25 x native²),
and the router's text pass ignored the model's `max_pixels_per_call`.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import core.largeformat.refine as refine
from core.campaign import expand_manifest, parse_manifest
from core.campaign.plan import is_large_job, pipeline_models, request_body
from core.config_file import parse_config
from core.largeformat.fanout import JobProgress
from core.largeformat.job_context import JobContext
from core.schemas import RenderRequestBody
from core.validation import is_large, resolve_large, single_pass_pixels

CONFIG = """
models:
  quality: {source: "tiny:0", native_resolution: 256}
  capped: {source: "tiny:1", native_resolution: 256, max_pixels_per_call: 16384}
limits: {max_width: 4096, max_height: 4096, max_pixels: 16777216, max_steps: 50}
"""

SIZES = [(320, 192), (256, 320), (512, 256), (336, 256)]


@pytest.fixture
def config():
    return parse_config(CONFIG)


def test_single_pass_area_is_a_quarter_over_native_and_never_over_the_call_limit(config):
    assert single_pass_pixels(config.models["quality"]) == 81920
    assert single_pass_pixels(config.models["capped"]) == 16384


@pytest.mark.parametrize("model", ["quality", "capped"])
def test_the_api_and_a_campaign_agree_on_what_is_large(config, model):
    sizes = ", ".join(f"{w}x{h}" for w, h in SIZES)
    manifest = parse_manifest(
        f"campaign: rules\ndefaults: {{model: {model}, sizes: [{sizes}]}}\n"
        "items:\n  - {id: one, prompt: a kite}\n",
        "yaml",
    )
    jobs = expand_manifest(manifest, config, pipeline_models(config))
    api = [
        is_large(RenderRequestBody(prompt="a kite", model=model, width=w, height=h), config)
        for w, h in SIZES
    ]
    campaign = [is_large_job(job, config) for job in jobs]
    assert campaign == api
    expected = [w * h > single_pass_pixels(config.models[model]) for w, h in SIZES]
    assert api == expected
    assert api == ([False, False, True, True] if model == "quality" else [True] * 4)
    assert [request_body(job).width for job in jobs] == [w for w, _ in SIZES]


def test_explicit_modes_win_over_the_area(config):
    body = RenderRequestBody(prompt="x", model="quality", width=64, height=64, mode="hires")
    assert is_large(body, config)
    body = body.model_copy(update={"mode": "single", "width": 512, "height": 512})
    assert not is_large(body, config)


def test_the_router_text_pass_uses_the_models_call_limit(config, monkeypatch, tmp_path):
    body = RenderRequestBody(
        prompt="poster",
        model="capped",
        width=512,
        height=256,
        text_boxes=[{"copy": "SALE", "anchor": {"x": 0.1, "y": 0.6, "w": 0.8, "h": 0.3}}],
    )
    job, _ = resolve_large(body, config, "20260101-000000-000000-00000000", "renders/x.png")
    assert job.max_call_pixels == 16384
    seen = []

    def spy(render, request, align, limit):
        seen.append(limit)
        return None

    async def delivered(canvas, text, img2img):
        return None

    monkeypatch.setattr(refine, "inpaint_pass", spy)
    monkeypatch.setattr(refine, "deliver_text", delivered)
    ctx = JobContext(job.job_id, None, None, tmp_path, JobProgress())
    finish = refine._text_pass(job, ctx)
    asyncio.run(finish(np.zeros((256, 512, 3), np.uint8)))
    assert seen == [16384]
