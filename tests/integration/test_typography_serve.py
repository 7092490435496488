"""Text boxes end to end on the shared cluster: single, large-format and pipeline renders."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from core.typography import tesseract_available

pytestmark = pytest.mark.skipif(
    not tesseract_available(), reason="tesseract missing (Debian: tesseract-ocr)"
)

COPY = "Spring SALE $19.99"
BOX = {
    "copy": COPY,
    "anchor": {"x": 0.08, "y": 0.55, "w": 0.84, "h": 0.3},
    "font_hint": "sans-bold",
}


def _image(http: httpx.Client, url: str) -> np.ndarray:
    response = http.get(url)
    assert response.status_code == 200
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def _assert_copy_delivered(image: np.ndarray, typography: dict) -> None:
    """The gate passed, and the ink's pixels are exactly the typeset ink in the final image."""
    assert typography["passed"], typography
    (box,) = typography["boxes"]
    assert box["delivered"] == "overlay" and box["gate"]["ocr_text"] == COPY
    checks = {check["name"]: check for check in box["gate"]["checks"]}
    assert checks["contrast"]["value"] >= 4.5 and checks["placement"]["value"] >= 0.9
    assert typography["stray_text"]["passed"]
    x0, y0, x1, y1 = box["typeset"]["ink_box"]
    ink = np.array([int(box["treatment"]["ink"][i : i + 2], 16) for i in (1, 3, 5)])
    assert np.all(image[y0:y1, x0:x1] == ink, axis=-1).mean() > 0.05


def test_single_render_with_a_text_box_is_gated_and_recorded(cluster):
    body = {"prompt": "a poster", "model": "quality", "width": 512, "height": 256, "seed": 3}
    body["mode"] = "single"  # one model pass (beyond the native size, auto would go hires)
    with cluster.client() as http:
        response = http.post("/v1/renders", json={**body, "text_boxes": [BOX]})
        assert response.status_code == 200, response.text
        rendered = response.json()
        record = http.get(f"/v1/runs/{rendered['id']}").json()
        plain = http.post("/v1/renders", json=body).json()
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(rendered["image_base64"]))))
    _assert_copy_delivered(image, record["typography"])
    assert record["params"]["text_boxes"][0]["copy"] == COPY
    assert "letters" in record["negative_prompt"]  # the quiet zone reached the model
    without = np.asarray(Image.open(io.BytesIO(base64.b64decode(plain["image_base64"]))))
    assert not np.array_equal(image, without)


def test_copy_that_cannot_fit_is_a_422_naming_the_box(cluster):
    long_box = {**BOX, "copy": "much too long " * 30, "max_lines": 1, "min_cap_height_px": 40}
    body = {"prompt": "a poster", "width": 512, "height": 256, "text_boxes": [BOX, long_box]}
    with cluster.client() as http:
        before = http.get("/v1/runs", params={"limit": 1000}).json()["runs"]
        response = http.post("/v1/renders", json=body)
        after = http.get("/v1/runs", params={"limit": 1000}).json()["runs"]
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "text_boxes[1].copy" and "max_lines=1" in error["message"]
    assert len(before) < 1000 and after == before  # nothing was rendered or recorded


def test_pipeline_with_a_text_box_delivers_a_large_format_image_that_passes_the_gate(cluster):
    with cluster.client() as http:
        waiting = http.post(
            "/v1/pipelines/standard/runs",
            json={"prompt": "a lighthouse", "seed": 5, "text_boxes": [BOX], "wait": True},
            timeout=600,
        ).json()
        assert waiting["status"] == "awaiting_approval", waiting["error"]
        done = http.post(
            f"/v1/renders/{waiting['id']}/approve", json={"wait": True}, timeout=600
        ).json()
        assert done["status"] == "done", done["error"]
        stages = {stage["name"]: stage for stage in done["stages"]}
        image = _image(http, done["result"]["url"])
    assert image.shape == (512, 1024, 3)
    assert "quiet_zone" in stages["layout"]["params"]  # the layout stage repainted the box
    assert "typography" not in stages["final"]  # text only after the last model pass
    _assert_copy_delivered(image, stages["hires"]["typography"])
    assert stages["hires"]["typography"]["boxes"][0]["typeset"]["cap_height_px"] >= 16


def test_large_render_gives_an_integrated_box_its_pass_on_the_replicas(cluster):
    box = {**BOX, "anchor": {"x": 0.1, "y": 0.6, "w": 0.5, "h": 0.25}, "mode": "integrated"}
    body = {"prompt": "a poster", "model": "quality", "width": 1024, "height": 512, "seed": 9}
    with cluster.client() as http:
        response = http.post(
            "/v1/renders", json={**body, "mode": "hires", "text_boxes": [box]}, timeout=600
        )
        assert response.status_code == 200, response.text
        view = response.json()
        assert view["status"] == "done", view.get("error")
        image = _image(http, view["result"]["url"])
    (report,) = view["typography"]["boxes"]
    integrated = report["integrated_gate"]
    assert integrated is not None and integrated["mode"] == "integrated"  # the pass ran
    assert report["delivered"] == ("integrated" if integrated["passed"] else "overlay")
    if report["delivered"] == "overlay":
        assert "failed the gate" in report["note"]
        _assert_copy_delivered(image, view["typography"])
    assert view["typography"]["passed"]
