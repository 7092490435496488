"""Inputs that froze, leaked or crashed the API are refused with a 4xx naming the field."""

from __future__ import annotations

import base64
import io
import os

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from core.campaign import ManifestError, parse_manifest
from core.campaign.report import summary_csv
from core.errors import NotFoundError, RequestError
from core.redact import public_message
from core.store import LocalStore
from serve.api_app import api
from tests.api.inprocess import config_for, install


@pytest.fixture
def client(tmp_path, monkeypatch):
    limits = {"max_pixels": 4096 * 4096, "max_width": 8192, "max_height": 8192}
    install(config_for(tmp_path, limits=limits), monkeypatch)
    return TestClient(api)


def _png(width: int, height: int, truncate: bool = False) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, "PNG")
    data = buffer.getvalue()
    return base64.b64encode(data[: len(data) // 2] if truncate else data).decode()


EPS = base64.b64encode(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n").decode()


def _refused(response, field: str, words: str = "") -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and words in error["message"], error


def test_one_model_call_is_bounded_by_the_model(client):
    single = {"prompt": "a", "mode": "single", "width": 2048, "height": 2048}
    _refused(client.post("/v1/renders", json=single), "width", "one model call")
    init = {"prompt": "a", "init_image": _png(704, 704), "strength": 0.5}
    _refused(client.post("/v1/renders", json=init), "init_image", "one model call")
    tiled = {"prompt": "a", "mode": "tiled", "width": 1024, "height": 1024, "tile_size": 4096}
    _refused(client.post("/v1/renders", json=tiled), "tile_size", "128")


def test_zero_denoising_steps_is_a_422_naming_the_product(client):
    body = {"prompt": "a", "init_image": _png(64, 64), "strength": 0.75, "steps": 1}
    _refused(client.post("/v1/renders", json=body | {"width": 64, "height": 64}), "steps", "0.75")


def test_truncated_and_non_allowed_uploads_are_422(client):
    body = {"prompt": "a", "strength": 0.5, "width": 64, "height": 64}
    truncated = client.post("/v1/renders", json=body | {"init_image": _png(64, 64, True)})
    _refused(truncated, "init_image")
    _refused(client.post("/v1/renders", json=body | {"init_image": EPS}), "init_image")
    for upload in (EPS, _png(64, 64, True)):
        run = client.post("/v1/pipelines/two/runs", json={"prompt": "a", "reference": upload})
        _refused(run, "reference")


def test_text_fields_are_bounded(client):
    long = "x" * 200_000
    body = {"prompt": "a", "negative_prompt": long, "width": 64, "height": 64}
    _refused(client.post("/v1/renders", json=body), "negative_prompt")
    run = client.post("/v1/pipelines/two/runs", json={"prompt": "a", "negative_prompt": long})
    assert run.status_code == 422


def test_non_finite_numbers_are_refused(client):
    for raw in (b'{"prompt": "a", "guidance": NaN}', b'{"prompt": "a", "strength": Infinity}'):
        response = client.post(
            "/v1/renders", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422


def test_yaml_aliases_and_huge_manifests_are_refused(client):
    bomb = 'campaign: c\na: &a ["1:1","1:1"]\nb: &b [*a,*a]\nitems: [{prompt: x, sizes: *b}]\n'
    with pytest.raises(ManifestError, match="aliases"):
        parse_manifest(bomb, "yaml")
    response = client.post("/v1/campaigns", json={"manifest": bomb})
    assert response.status_code == 422 and "aliases" in response.text
    assert len(response.text) < 5000
    huge = "campaign: c\nitems:\n" + "  - {prompt: x}\n" * 200_000
    response = client.post("/v1/campaigns", json={"manifest": huge})
    assert response.status_code == 422 and "at most" in response.text


def test_campaign_expansion_is_capped(client):
    items = [
        {"prompt": f"p{i}", "sizes": [f"{64 + 8 * k}x64" for k in range(32)], "variants": 64}
        for i in range(50)
    ]
    response = client.post("/v1/campaigns", json={"campaign": "big", "items": items})
    assert response.status_code == 422 and "100000" in response.text


def test_report_escapes_html_and_csv_formulas(client):
    manifest = {"campaign": "xss", "items": [{"prompt": "=HYPERLINK(1) <script>x</script>"}]}
    assert client.post("/v1/campaigns", json=manifest).status_code == 202
    urls = client.post("/v1/campaigns/xss/report").json()
    html = client.get(urls["report_url"]).text
    assert "<script>x" not in html and "&lt;script&gt;" in html
    csv_text = client.get(urls["csv_url"]).text
    assert ",'=HYPERLINK(1)" in csv_text
    assert summary_csv([]).startswith("key,")


def test_the_local_store_never_follows_a_symlink(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    store = LocalStore(tmp_path / "store")
    (tmp_path / "store" / "renders").mkdir(parents=True)
    os.symlink(outside, tmp_path / "store" / "renders" / "leak.png")
    os.symlink(tmp_path, tmp_path / "store" / "up")
    with pytest.raises(NotFoundError):
        store.get_bytes("renders/leak.png")
    with pytest.raises(NotFoundError):
        store.get_bytes("up/secret.txt")
    assert not store.exists("renders/leak.png")
    assert store.list_keys("renders/") == []


def test_long_key_segments_are_a_request_error(tmp_path):
    with pytest.raises(RequestError, match="255"):
        LocalStore(tmp_path).get_bytes("renders/" + "a" * 300)


def test_public_messages_carry_no_path_traceback_pid_or_address():
    raw = (
        "tile (0, 0): ray::TileRouter.run() (pid=4242, ip=10.1.2.3) at /srv/x/y.py "
        'Traceback (most recent call last):\n  File "/srv/x/y.py", line 1\nValueError: boom'
    )
    public = public_message(raw)
    for leak in ("4242", "10.1.2.3", "/srv/", "Traceback", "File "):
        assert leak not in public
    assert "ValueError: boom" in public
