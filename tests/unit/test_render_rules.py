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
from core.errors import RequestError
from core.largeformat.fanout import JobProgress
from core.largeformat.hires import base_size
from core.largeformat.job_context import JobContext
from core.schemas import RenderRequestBody
from core.validation import check_size, is_large, resolve_large, single_pass_pixels

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


def test_a_model_with_a_4x_vae_takes_sizes_in_multiples_of_8_outside_fused_latents():
    """diffusers' text-to-image pipelines refuse sizes off a multiple of 8 whatever the
    VAE's factor: the scenes model (latent factor 4) renders on an 8-pixel grid, and only
    fused jobs, which never call those pipelines, align to 4."""
    config = parse_config(
        "models:\n  scenes: {source: models/scenes, native_resolution: 128, latent_factor: 4}\n"
        "limits: {max_width: 4096}\n"
    )
    model = config.models["scenes"]
    assert model.size_step == 8 and config.models["scenes"].latent_factor == 4
    hosted = parse_config(
        "models:\n  hosted: {family: remote, remote: {provider: ideogram, model: V_2}}\n"
    )
    assert hosted.models["hosted"].size_step == 1  # the provider's sizes, any pixel
    check_size(136, 128, model, config)
    with pytest.raises(RequestError) as refused:
        check_size(132, 128, model, config)
    assert refused.value.field == "width"
    assert str(refused.value.message).startswith(
        "must be a multiple of 8 (the model's latent factor, 4, and 8, as diffusers' "
        "pipelines ask); got 132, nearest valid sizes are 128 and 136"
    )
    body = {"prompt": "a red circle on a blue background", "model": "scenes", "seed": 1}
    hires, _ = resolve_large(RenderRequestBody(**body, width=4096, height=1024), config, "j1", "k")
    fused, _ = resolve_large(
        RenderRequestBody(**body, width=512, height=512, mode="fused"), config, "j2", "k"
    )
    assert (hires.align, fused.align) == (8, 4)
    assert base_size(hires.width, hires.height, 128, hires.align) == (256, 64)
    assert base_size(2048, 1024, 128, hires.align) == (184, 88)  # 180x92 on a 4-pixel grid
