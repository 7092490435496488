"""Per-key limits (429 naming the limit, Retry-After), usage, body size and error bodies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.tenants import TenantLimits, add_key
from serve.api_app import api
from tests.api.inprocess import config_for, install


def _client(tmp_path, monkeypatch, key_limits: TenantLimits, **config):
    keys = tmp_path / "keys.yaml"
    key = add_key(keys, "acme", key_limits)
    auth = {"keys_file": str(keys)}
    install(config_for(tmp_path / "store", auth, **config), monkeypatch)
    return TestClient(api), {"Authorization": f"Bearer {key}"}


def test_requests_per_minute_is_a_429_naming_the_limit(tmp_path, monkeypatch):
    client, key = _client(tmp_path, monkeypatch, TenantLimits(requests_per_minute=3))
    assert [client.get("/v1/runs", headers=key).status_code for _ in range(3)] == [200] * 3
    refused = client.get("/v1/runs", headers=key)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["field"] == "requests_per_minute"
    assert "requests_per_minute = 3" in refused.json()["error"]["message"]


def test_pixels_per_day_and_usage(tmp_path, monkeypatch):
    client, key = _client(tmp_path, monkeypatch, TenantLimits(max_pixels_per_day=64 * 64 * 2))
    body = {"prompt": "a cat", "width": 64, "height": 64}
    assert client.post("/v1/renders", json=body, headers=key).status_code == 200
    assert client.post("/v1/renders", json=body, headers=key).status_code == 200
    refused = client.post("/v1/renders", json=body, headers=key)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert refused.json()["error"]["field"] == "max_pixels_per_day"
    usage = client.get("/v1/usage", headers=key).json()
    assert usage["tenant"] == "acme"
    assert usage["limits"]["max_pixels_per_day"] == 64 * 64 * 2
    assert usage["usage"]["pixels_today"] == 64 * 64 * 2
    assert usage["usage"]["requests_last_minute"] >= 4


def test_concurrent_jobs_limit(tmp_path, monkeypatch):
    client, key = _client(tmp_path, monkeypatch, TenantLimits(max_concurrent_jobs=1))
    first = client.post("/v1/pipelines/two/runs", json={"prompt": "a"}, headers=key)
    assert first.status_code == 202, first.text
    second = client.post("/v1/pipelines/two/runs", json={"prompt": "b"}, headers=key)
    assert second.status_code == 429
    assert second.json()["error"]["field"] == "max_concurrent_jobs"
    assert client.get("/v1/usage", headers=key).json()["usage"]["concurrent_jobs"] == 1


def test_a_body_over_the_limit_is_a_413_before_the_key_is_needed_to_parse_it(tmp_path, monkeypatch):
    client, key = _client(tmp_path, monkeypatch, TenantLimits(), limits={"max_body_bytes": 4096})
    big = {"prompt": "x" * 10_000}
    refused = client.post("/v1/renders", json=big, headers=key)
    assert refused.status_code == 413
    assert refused.json()["error"]["field"] == "body" and refused.json()["request_id"]

    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    streamed = client.post("/v1/renders", content=chunks(), headers=key)
    assert streamed.status_code == 413
    # no key: refused before the body is read
    assert client.post("/v1/renders", json={"prompt": "x"}).status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/v1/runs/20251399-000000-000000-1a2b3c4d",
        "/v1/renders/20250230-000000-000000-1a2b3c4d",
        "/v1/runs?since=0001-01-01T00:00:00%2B23:59",
        "/v1/runs?until=9999-12-31T23:59:59-23:59",
        "/v1/artifacts/renders/" + "a" * 300 + "/image.png",
        "/v1/campaigns/" + "a" * 300,
    ],
)
def test_client_input_is_a_4xx_with_a_request_id(tmp_path, monkeypatch, path):
    client, key = _client(tmp_path, monkeypatch, TenantLimits())
    response = client.get(path, headers=key)
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert str(tmp_path) not in response.text and "Traceback" not in response.text


def test_a_storage_failure_names_no_path(tmp_path, monkeypatch):
    client, key = _client(tmp_path, monkeypatch, TenantLimits())
    (tmp_path / "store" / "runs").mkdir(parents=True)
    (tmp_path / "store" / "runs" / "2025").write_text("not a folder")
    (tmp_path / "store" / "runs" / "2026").mkdir()
    (tmp_path / "store" / "runs" / "2026" / "01").mkdir()
    (tmp_path / "store" / "runs" / "2026" / "01" / "01").mkdir()
    bad = (
        tmp_path / "store" / "runs" / "2026" / "01" / "01" / "20260101-000000-000000-1a2b3c4d.json"
    )
    bad.mkdir()
    response = client.get("/v1/runs/20260101-000000-000000-1a2b3c4d", headers=key)
    assert response.status_code in (404, 502)
    assert str(tmp_path) not in response.text
