"""Fused renders through the API and the tile router, on 1 and 4 replicas of `quality`.

The module redeploys the shared app with `quality` at 1 replica, then 4, like
test_large_format.py, and restores the original app at the end.
"""

from __future__ import annotations

import functools
import json
from io import BytesIO

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPanoramaPipeline
from PIL import Image
from ray import serve

from core.config import APP_NAME
from serve.app import application
from serve.local_cluster import wait_running
from serve.tiny_pipeline import tiny_pipeline_dir
from tests.integration.test_large_format import deploy_quality, render_large
from tests.integration.test_render_service import png_b64
from tests.unit.test_upscaler import scene

FUSED = {
    "prompt": "a harbour town",
    "model": "quality",
    "width": 700,  # any size: not a multiple of 8
    "height": 300,
    "seed": 11,
    "steps": 3,
    "mode": "fused",
}


@pytest.fixture(scope="module")
def redeployed(cluster):
    yield cluster
    serve.run(application(cluster.config), name=APP_NAME, route_prefix="/", blocking=False)
    wait_running()


def test_fused_bytes_are_identical_on_one_and_four_replicas(redeployed):
    deploy_quality(redeployed.config, 1)
    with redeployed.client() as http:
        one_view, one = render_large(http, FUSED)
    deploy_quality(redeployed.config, 4)
    with redeployed.client() as http:
        four_view, four = render_large(http, FUSED)
        record = http.get(f"/v1/runs/{four_view['id']}").json()
    assert one.shape == four.shape == (300, 700, 3)
    assert np.array_equal(one, four)
    assert one_view["result"]["metrics"]["replicas_used"] == 1
    metrics = four_view["result"]["metrics"]
    assert metrics["replicas_used"] > 1 and metrics["max_concurrent_replicas"] >= 2
    assert record["params"]["mode"] == "fused"
    assert {"steps_s", "step_overhead_ms", "decode_s"} <= set(record["timings"])


def test_uniform_fused_matches_the_panorama_pipeline(redeployed):
    """MultiDiffusion's windows (32 latents, stride 8) are our tiles of 256 px overlapping
    by 192; the latents agree to float rounding (tests/unit/test_fused_engine.py), the
    pixels differ only by our tiled decode against its whole-canvas decode."""
    deploy_quality(redeployed.config, 4)
    body = {**FUSED, "width": 768, "height": 256, "tile_size": 256, "overlap": 192}
    with redeployed.client() as http:
        view, ours = render_large(http, {**body, "fuse": "uniform"})
    assert view["result"]["metrics"]["tiles"] == 9
    torch.set_num_threads(1)
    pipe = StableDiffusionPanoramaPipeline.from_pretrained(
        tiny_pipeline_dir(redeployed.config.model_cache_dir, 0),
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.get_views = functools.partial(pipe.get_views, window_size=32, stride=8)
    theirs = pipe(
        body["prompt"],
        width=768,
        height=256,
        num_inference_steps=3,
        guidance_scale=redeployed.config.models["quality"].default_guidance,
        generator=torch.Generator().manual_seed(11),
        output_type="np",
    ).images[0]
    difference = np.abs(ours.astype(int) - (theirs * 255).round().astype(int))
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 6, difference.max()


def test_fused_img2img_and_a_hires_render_of_any_size(redeployed):
    deploy_quality(redeployed.config, 4)
    base = png_b64(scene(200, 100))
    fused = {**FUSED, "width": 517, "height": 263, "base_image": base, "strength": 0.6}
    hires = {**FUSED, "mode": "hires", "width": 701, "height": 301, "steps": 3}
    with redeployed.client() as http:
        fused_view, fused_image = render_large(http, fused)
        _, hires_image = render_large(http, hires)
    assert fused_image.shape == (263, 517, 3)
    assert fused_view["result"]["metrics"]["tiles"] == 6
    assert hires_image.shape == (301, 701, 3)


@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ({"mode": "hires", "fuse": "uniform"}, "fuse", "only used by fused"),
        ({"overlap": 250}, "overlap", "multiple of 8"),
        ({"overlap": 256}, "overlap", "at most 248"),
        ({"mode": "single", "fuse": "gaussian", "width": 256, "height": 256}, "fuse", "fused"),
        ({"mode": "single", "width": 250, "height": 256}, "width", "multiple of 8"),
    ],
)
def test_bad_fused_requests_are_422(redeployed, patch, field, fragment):
    with redeployed.client() as http:
        response = http.post("/v1/renders", json={**FUSED, **patch})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and fragment in error["message"]


def test_the_readme_fused_example_works_as_written(redeployed, tmp_path):
    from tests.integration.test_readme import run, section_commands

    (command,) = section_commands("Large-format renders")
    assert '"mode": "fused"' in command
    result = run(command.replace("curl -s", "curl -sf"), redeployed, tmp_path)
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["status"] == "done", view
    with redeployed.client() as http:
        image = Image.open(BytesIO(http.get(view["result"]["url"]).content))
    assert image.size == (1000, 300)
