"""Hires renders whose base goes through the real Real-ESRGAN `upscaler` model.

On the shared cluster (configs/local.yaml: the tiny `quality` model and the real
x4 `upscaler`), a small hires render with `hires_upscaler: upscaler` upscales its
base tiled across the upscaler's replicas before the tiled refine: it has the
size asked, differs from the Lanczos render of the same seed, and its record
and its job's result name the upscaler.
"""

from __future__ import annotations

from io import BytesIO

import httpx
import numpy as np
from PIL import Image

HIRES = {
    "prompt": "a lighthouse on a cliff",
    "model": "quality",
    "width": 512,
    "height": 256,
    "mode": "hires",
    "steps": 3,  # 3 x the refine strength 0.35: one denoising step per tile
    "seed": 21,
}


def _render(http: httpx.Client, body: dict) -> tuple[dict, np.ndarray]:
    response = http.post("/v1/renders", json=body, timeout=600)
    assert response.status_code == 200, response.text
    view = response.json()
    image = http.get(view["result"]["url"])
    assert image.status_code == 200
    return view, np.asarray(Image.open(BytesIO(image.content)).convert("RGB"))


def test_a_hires_render_through_the_upscaler_model_differs_from_lanczos(cluster):
    with cluster.client() as http:
        lanczos_view, lanczos = _render(http, HIRES)
        model_view, upscaled = _render(http, {**HIRES, "hires_upscaler": "upscaler"})
        run = http.get(f"/v1/runs/{model_view['id']}").json()
        job = http.get(model_view["job"]).json()
    assert lanczos.shape == upscaled.shape == (256, 512, 3)
    assert lanczos_view["hires_upscaler"] == "lanczos"
    assert model_view["hires_upscaler"] == "upscaler"
    assert run["params"]["hires_upscaler"] == "upscaler"
    assert job["result"]["hires_upscaler"] == "upscaler"
    assert model_view["result"]["timings"]["upscale_s"] > 0
    metrics = model_view["result"]["metrics"]  # the upscaler's calls counted apart
    assert metrics["upscaler_calls"] >= 1 and metrics["upscaler_replicas_used"] >= 1
    assert run["metrics"]["upscaler_calls"] == metrics["upscaler_calls"]
    assert "upscaler_calls" not in lanczos_view["result"]["metrics"]
    assert np.abs(lanczos.astype(int) - upscaled).mean() > 1.0
    assert upscaled.std() > 5  # an image, not a blank


def test_a_hires_upscaler_that_is_no_upscaler_model_is_422_naming_the_field(cluster):
    with cluster.client() as http:
        response = http.post("/v1/renders", json={**HIRES, "hires_upscaler": "fast"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "hires_upscaler"
    assert "not an upscaler" in error["message"]
