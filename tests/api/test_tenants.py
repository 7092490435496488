"""Two tenants through every route: each sees only its own work; links are signed."""

from __future__ import annotations

import html
import re
import time
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from core.campaign.plan import manifest_key
from core.campaign.report import relative_to_report
from core.links import signed_url
from core.tenants import TenantLimits, add_key, hash_key, read_keys_file
from serve.api_app import api
from serve.links import campaign_owner_key
from tests.api.inprocess import config_for, install


@pytest.fixture
def tenants(tmp_path, monkeypatch):
    keys = tmp_path / "keys.yaml"
    a = add_key(keys, "acme", TenantLimits())
    b = add_key(keys, "globex", TenantLimits())
    renders = install(config_for(tmp_path / "store", {"keys_file": str(keys)}), monkeypatch)
    client = TestClient(api)
    return client, {"Authorization": f"Bearer {a}"}, {"X-API-Key": b}, renders, keys


def _render(client, headers, **extra):
    body = {"prompt": "a cat", "width": 64, "height": 64, "seed": 1} | extra
    response = client.post("/v1/renders", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_keys_file_holds_hashes_never_keys(tmp_path):
    path = tmp_path / "keys.yaml"
    key = add_key(path, "acme", TenantLimits(requests_per_minute=5))
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    assert read_keys_file(path).keys[0].limits.requests_per_minute == 5


def test_every_route_but_health_needs_a_key(tenants):
    client, *_ = tenants
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    for method, path in [
        ("GET", "/v1/models"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/usage"),
        ("GET", "/v1/pipelines"),
        ("POST", "/v1/renders"),
        ("GET", "/v1/artifacts/renders/x/image.png"),
        ("POST", "/v1/campaigns"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
    ]:
        response = client.request(method, path, json={})
        assert response.status_code == 401, (method, path)
        assert response.json()["request_id"].startswith("req_")


def test_readiness_is_open_to_probes_but_names_models_only_to_a_key(tenants, monkeypatch):
    client, a, *_ = tenants

    async def not_ready() -> dict[str, str]:
        return {"quality": "no replica running"}

    monkeypatch.setattr(tenants[3].jobs.capacity, "not_ready", not_ready)
    probe = client.get("/readyz")
    assert probe.status_code == 503 and probe.json() == {"ready": False}
    keyed = client.get("/readyz", headers=a)
    assert keyed.json() == {"ready": False, "not_running": {"quality": "no replica running"}}
    assert client.get("/readyz", headers={"X-API-Key": "nope"}).json() == {"ready": False}


def test_a_wrong_or_non_ascii_key_is_a_401_not_a_500(tenants):
    client, *_ = tenants
    for key in ["nope", "k\u00e9y", "x" * 5000]:
        headers = {"X-API-Key": key.encode("utf-8")}
        assert client.get("/v1/runs", headers=headers).status_code == 401


def test_two_tenants_cannot_see_each_others_renders(tenants):
    client, a, b, *_ = tenants
    mine = _render(client, a)
    run_id = mine["id"]
    assert client.get(f"/v1/runs/{run_id}", headers=a).status_code == 200
    for path in [
        f"/v1/runs/{run_id}",
        f"/v1/renders/{run_id}",
        f"/v1/runs/{run_id}/diff/{run_id}",
        f"/v1/artifacts/renders/{run_id}/image.png",
        f"/v1/artifacts/runs/{run_id[:4]}/{run_id[4:6]}/{run_id[6:8]}/{run_id}.json",
    ]:
        response = client.get(path, headers=b)
        assert response.status_code == 404, (path, response.text)
    assert client.get(f"/v1/artifacts/renders/{run_id}/image.png", headers=a).status_code == 200
    assert [r["id"] for r in client.get("/v1/runs", headers=a).json()["runs"]] == [run_id]
    assert client.get("/v1/runs", headers=b).json()["runs"] == []
    record = client.get(f"/v1/runs/{run_id}", headers=a).json()
    assert record["owner"] == "acme" and record["request_id"].startswith("req_")


def test_idempotency_keys_are_per_tenant(tenants):
    client, a, b, *_ = tenants
    body = {"prompt": "a cat", "width": 64, "height": 64, "seed": 1}
    first = client.post("/v1/renders", json=body, headers=a | {"Idempotency-Key": "k1"}).json()
    other = client.post("/v1/renders", json=body, headers=b | {"Idempotency-Key": "k1"}).json()
    assert first["id"] != other["id"]


def test_jobs_and_pipeline_runs_are_the_tenants_own(tenants):
    client, a, b, *_ = tenants
    started = client.post("/v1/pipelines/two/runs", json={"prompt": "a cat"}, headers=a)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert client.get(f"/v1/jobs/{run_id}", headers=a).json()["owner"] == "acme"
    for method, path in [
        ("GET", f"/v1/jobs/{run_id}"),
        ("POST", f"/v1/jobs/{run_id}/cancel"),
        ("GET", f"/v1/pipelines/runs/{run_id}"),
        ("POST", f"/v1/renders/{run_id}/approve"),
        ("POST", f"/v1/renders/{run_id}/reject"),
    ]:
        assert client.request(method, path, headers=b).status_code == 404, path
    rerun = client.post(f"/v1/renders/{run_id}/rerun", json={"stage": "base"}, headers=b)
    assert rerun.status_code == 404
    assert client.get("/v1/jobs", headers=b).json()["jobs"] == []
    assert len(client.get("/v1/jobs", headers=a).json()["jobs"]) == 1
    assert client.post(f"/v1/jobs/{run_id}/cancel", headers=a).status_code == 200


def test_campaigns_are_the_tenants_own(tenants):
    client, a, b, *_ = tenants
    manifest = {"campaign": "spring", "items": [{"prompt": "a cat", "sizes": ["64x64"]}]}
    assert client.post("/v1/campaigns", json=manifest, headers=a).status_code == 202
    assert client.get("/v1/campaigns/spring", headers=a).status_code == 200
    assert client.get("/v1/campaigns/spring", headers=b).status_code == 404
    assert client.post("/v1/campaigns/spring/report", headers=b).status_code == 404
    assert client.post("/v1/campaigns", json=manifest, headers=b).status_code == 409
    status = client.get("/v1/artifacts/campaigns/spring/status.json", headers=b)
    assert status.status_code == 404


def test_two_tenants_racing_for_one_campaign_name_leave_it_to_the_first(tenants, monkeypatch):
    client, a, b, renders, _ = tenants
    manifest = {"campaign": "autumn", "items": [{"prompt": "a cat", "sizes": ["64x64"]}]}
    owner_key = campaign_owner_key("autumn")
    store = renders.store
    put_bytes = store.put_bytes

    def acme_lands_first(write):
        def racing(key, data):
            if key == owner_key and not store.exists(key):
                put_bytes(key, b"acme")  # acme's request, on another replica, just now
            return write(key, data)

        return racing

    for method in ("put_bytes", "put_if_absent"):
        monkeypatch.setattr(store, method, acme_lands_first(getattr(store, method)))
    refused = client.post("/v1/campaigns", json=manifest, headers=b)
    assert refused.status_code == 409 and "taken" in refused.json()["error"]["message"]
    assert store.get_bytes(owner_key) == b"acme"
    assert not store.exists(manifest_key("autumn"))


def test_signed_links_work_without_a_key_until_they_expire(tenants):
    client, a, b, renders, _ = tenants
    url = _render(client, a)["url"]
    assert "sig=" in url and "expires=" in url
    assert client.get(url).status_code == 200  # no key at all
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    tampered = f"{parts.path}?expires={int(query['expires'][0]) + 60}&sig={query['sig'][0]}"
    assert client.get(tampered).status_code == 403
    other_key = parts.path.replace("image.png", "other.png")
    assert client.get(f"{other_key}?{parts.query}").status_code == 403
    key = parts.path.removeprefix("/v1/artifacts/")
    expired = signed_url(renders.links.secret(), key, -10)
    response = client.get(expired)
    assert response.status_code == 403 and "expired" in response.json()["error"]["message"]


def test_a_signed_campaign_report_shows_its_images_without_a_key(tenants):
    """The report links its files by relative paths: each is signed when the report is served."""
    client, a, b, renders, _ = tenants
    manifest = {"campaign": "spring", "items": [{"prompt": "a cat", "sizes": ["64x64"]}]}
    assert client.post("/v1/campaigns", json=manifest, headers=a).status_code == 202
    image_key = urlsplit(_render(client, a)["url"]).path.removeprefix("/v1/artifacts/")
    report_key, thumb_key = "campaigns/spring/report.html", "campaigns/spring/thumbs/i1.jpg"
    renders.store.put_bytes(thumb_key, b"thumbnail bytes")
    relative = relative_to_report("spring")
    page = (
        f'<a href="#item-i1">i1</a><img src="{relative(thumb_key)}" alt="i1">'
        f'<a href="{relative(image_key)}">full size</a><a href="https://example.org/">x</a>'
    )
    renders.store.put_bytes(report_key, page.encode())
    report_url = renders.links.url(report_key)
    served = client.get(report_url)  # no key, as a browser opening a shared link
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    links = re.findall(r'(?:src|href)="([^"]+)"', served.text)
    assert links[0] == "#item-i1" and links[3] == "https://example.org/"
    thumb, image = (urljoin(report_url, html.unescape(link)) for link in links[1:3])
    assert client.get(thumb).content == b"thumbnail bytes"
    assert client.get(image).headers["content-type"] == "image/png"
    assert urlsplit(thumb).query.split("&")[0] == urlsplit(report_url).query.split("&")[0]
    unsigned = urljoin(report_url, relative(thumb_key))
    assert client.get(unsigned).status_code == 401  # the bare relative link needs a key
    assert client.get(f"/v1/artifacts/{report_key}", headers=b).status_code == 404


def test_keys_rotate_without_a_restart(tenants):
    client, a, _, _, keys = tenants
    assert client.get("/v1/runs", headers=a).status_code == 200
    new = add_key(keys, "acme", TenantLimits())
    assert client.get("/v1/runs", headers={"X-API-Key": new}).status_code == 200
    text = keys.read_text()
    token = a["Authorization"].removeprefix("Bearer ")
    start = text.index(f"- sha256: {hash_key(token)}")
    end = text.index("- sha256:", start + 1)
    keys.write_text(text[:start] + text[end:])
    time.sleep(0.01)
    assert client.get("/v1/runs", headers=a).status_code == 401


def test_open_paths_and_signed_links_hold_under_a_route_prefix(tenants):
    """Serve passes the application's route prefix as root_path (and in the path)."""
    _, a, _, _, _ = tenants
    prefixed = TestClient(api, root_path="/keys", base_url="http://testserver/keys/")
    body = {"prompt": "a cat", "width": 64, "height": 64, "seed": 1}
    url = prefixed.post("v1/renders", json=body, headers=a).json()["url"]
    assert urlsplit(url).path.startswith("/keys/v1/artifacts/")
    assert prefixed.get(url).status_code == 200  # no key
    assert prefixed.get("healthz").status_code == 200
    assert prefixed.get("v1/runs").status_code == 401
