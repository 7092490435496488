"""The review board's sign-in: session cookie, the gate on /ui/, CSRF, tenants apart."""

from __future__ import annotations

import asyncio
import re
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.errors import TypographyGateFailed
from core.schemas import RenderRequestBody
from core.tenants import TenantLimits, add_key, hash_key
from core.typography import tesseract_available
from serve.api_app import api
from serve.ui import session
from tests.api.inprocess import config_for, install

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def board(tmp_path, monkeypatch):
    keys = tmp_path / "keys.yaml"
    a = add_key(keys, "acme", TenantLimits())
    b = add_key(keys, "globex", TenantLimits())
    install(config_for(tmp_path / "store", {"keys_file": str(keys)}), monkeypatch)
    return TestClient(api, base_url="https://testserver"), a, b, keys


def _render(client, key, prompt):
    body = {"prompt": prompt, "width": 64, "height": 64, "seed": 1}
    response = client.post("/v1/renders", json=body, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def sign_in(client: TestClient, key: str):
    form = client.get("/ui/login")
    assert form.status_code == 200
    token = CSRF.search(form.text).group(1)
    return client.post("/ui/login", data={"api_key": key, "csrf": token}, follow_redirects=False)


def test_pages_need_a_session_and_send_people_to_sign_in(board):
    client, *_ = board
    for path in ["/ui/runs", "/ui/approvals", "/ui/jobs", "/ui/runs/x", "/ui/jobs.json"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/ui/login"
    assert client.get("/v1/runs").status_code == 401  # the API still wants its key


def test_signing_in_sets_an_httponly_strict_cookie_that_acts_for_the_key(board):
    client, a, b, _ = board
    mine = _render(client, a, "acme's lighthouse")
    theirs = _render(client, b, "globex's <script>alert(1)</script> tower")
    answer = sign_in(client, a)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/runs"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    assert a not in cookie and hash_key(a) in cookie  # the key itself is never in it
    gallery = client.get("/ui/runs")
    assert gallery.status_code == 200 and mine in gallery.text and theirs not in gallery.text
    assert "acme" in gallery.text
    for path in [f"/ui/runs/{theirs}", f"/ui/diff/{mine}/{theirs}", f"/ui/thumbs/{theirs}/image"]:
        assert client.get(path).status_code == 404, path
    assert client.get(f"/ui/runs/{mine}").status_code == 200
    session_cookie = {"Cookie": f"{session.COOKIE}={client.cookies.get(session.COOKIE)}"}
    assert client.get("/v1/runs", headers=session_cookie).status_code == 401  # /ui/ only
    assert client.get(f"/ui/thumbs/{mine}/image").headers["content-type"] == "image/jpeg"


def test_a_bad_key_forged_or_expired_cookie_or_revoked_key_is_not_a_session(board):
    client, a, _, keys = board
    assert sign_in(client, "rc_wrong").status_code == 401
    client.cookies.set(session.COOKIE, f"{hash_key(a)}.00.9999999999.{'0' * 64}")
    assert client.get("/ui/runs", follow_redirects=False).status_code == 303
    secret = api.state.context.links.secret()
    old = session.make_token(secret, hash_key(a), now=time.time() - session.SESSION_TTL_S - 5)
    client.cookies.set(session.COOKIE, old)
    assert client.get("/ui/runs", follow_redirects=False).status_code == 303
    client.cookies.clear()
    assert sign_in(client, a).status_code == 303
    assert client.get("/ui/runs").status_code == 200
    keys.write_text("keys: []\n")  # revoked: its sessions end with it
    assert client.get("/ui/runs", follow_redirects=False).status_code == 303


def test_every_post_needs_the_sessions_csrf_token(board):
    client, a, *_ = board
    assert client.post("/ui/login", data={"api_key": a}).status_code == 403
    sign_in(client, a)
    page = client.get("/ui/jobs")
    token = CSRF.search(page.text).group(1)
    assert client.post("/ui/logout", data={"csrf": "0" * 64}).status_code == 403
    rid = _render(client, a, "a cat")
    for path in [
        f"/ui/approvals/{rid}/approve",
        f"/ui/approvals/{rid}/reject",
        f"/ui/approvals/{rid}/rerun",
        f"/ui/jobs/{rid}/cancel",
        "/ui/campaigns/spring/retry",
        "/ui/campaigns/spring/report",
    ]:
        answer = client.post(path, data={"csrf": token[::-1], "reason": "x", "stage": "base"})
        assert answer.status_code == 403, path
    assert client.post("/ui/logout", data={}).status_code == 403
    out = client.post("/ui/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ui/runs", follow_redirects=False).status_code == 303


def test_without_keys_the_board_is_open(tmp_path, monkeypatch):
    install(config_for(tmp_path / "store"), monkeypatch)
    client = TestClient(api)
    rid = _render(client, "unused", "an open <b>harbour</b>")
    page = client.get("/ui/runs", params={"q": "HARBOUR"})
    assert page.status_code == 200 and rid in page.text
    assert "an open &lt;b&gt;harbour&lt;/b&gt;" in page.text  # escaped, never markup
    assert rid not in client.get("/ui/runs", params={"q": "lighthouse"}).text
    assert "No experiments yet" in client.get("/ui/experiments").text


def test_the_gallery_pages_with_a_cursor_and_keeps_its_filters(tmp_path, monkeypatch):
    install(config_for(tmp_path / "store"), monkeypatch)
    client = TestClient(api)
    made = [_render(client, "unused", f"tile {n}") for n in range(27)]
    made.append(_render(client, "unused", "something else"))
    first = client.get("/ui/runs", params={"q": "tile"})
    shown = re.findall(r'data-run="([^"]+)"', first.text)
    assert shown == made[26:2:-1]  # newest first, a page of 24
    link = re.search(r'id="next-page" href="([^"]+)"', first.text).group(1)
    second = client.get(link.replace("&amp;", "&"))
    assert re.findall(r'data-run="([^"]+)"', second.text) == made[2::-1]
    assert 'id="next-page"' not in second.text
    assert client.get("/ui/runs", params={"cursor": "../x"}).status_code == 422


def test_a_run_held_by_the_typography_gate_shows_its_review_image_and_failing_check(
    tmp_path, monkeypatch
):
    if not tesseract_available():
        pytest.skip("tesseract missing (Debian: tesseract-ocr)")
    config = config_for(tmp_path / "store", typography={"gate": {"min_contrast": 21}})
    renders = install(config, monkeypatch)
    box = {"copy": "SALE", "anchor": {"x": 0.1, "y": 0.6, "w": 0.8, "h": 0.3}}
    body = RenderRequestBody(prompt="a poster", width=128, height=128, seed=2, text_boxes=[box])
    with pytest.raises(TypographyGateFailed) as held:
        asyncio.run(renders.render_single(body))
    run_id = held.value.run_id
    client = TestClient(api)
    page = client.get(f"/ui/runs/{run_id}")
    assert f"/ui/thumbs/{run_id}/review_image" in page.text
    verdict = re.search(r'id="typography-gate">(.*?)</td>', page.text, re.S).group(1)
    assert verdict.startswith("failed (1 text box)") and "contrast" in verdict
    assert client.get(f"/ui/thumbs/{run_id}/review_image").status_code == 200


def test_a_campaign_page_polls_its_progress_and_only_its_tenant_sees_it(board):
    client, a, b, _ = board
    manifest = {"campaign": "spring", "items": [{"prompt": "a cat", "sizes": ["64x64"]}]}
    submitted = client.post("/v1/campaigns", json=manifest, headers={"X-API-Key": a})
    assert submitted.status_code == 202, submitted.text
    sign_in(client, a)
    page = client.get("/ui/campaigns/spring")
    assert page.status_code == 200 and "/ui/campaigns/spring/status.json" in page.text
    status = client.get("/ui/campaigns/spring/status.json").json()
    assert (status["total"], status["done"]) == (1, 0)  # no runner in-process: "stopped"
    assert status["state"] in ("running", "finished", "stopped")
    client.cookies.clear()
    sign_in(client, b)
    assert client.get("/ui/campaigns/spring/status.json").status_code == 404


def test_deep_zoom_tiles_and_job_previews_are_the_callers_only(board):
    """The pyramid's info and tiles, and a large job's preview, answer the run's own tenant;
    another tenant (or a bad level, tile or id) gets a 404 page that names no path."""
    client, a, b, _ = board
    mine = _render(client, a, "acme's lighthouse")
    theirs = _render(client, b, "globex's tower")
    sign_in(client, a)
    info = client.get(f"/ui/tiles/{mine}/image/info.json")
    assert info.status_code == 200, info.text
    assert info.json() == {"width": 64, "height": 64, "tile": 256, "max_level": 6}
    tile = client.get(f"/ui/tiles/{mine}/image/6/0_0.jpg")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
    for path in [
        f"/ui/tiles/{theirs}/image/info.json",
        f"/ui/tiles/{theirs}/image/6/0_0.jpg",
        f"/ui/tiles/{mine}/image/7/0_0.jpg",
        f"/ui/tiles/{mine}/image/6/1_0.jpg",
        f"/ui/tiles/{mine}/nothing/info.json",
        f"/ui/jobs/{mine}/preview.png",
        "/ui/jobs/..%2F..%2Fkeys/preview.png",
    ]:
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "/store" not in answer.text and "Traceback" not in answer.text, path

    large = {"prompt": "a billboard", "width": 256, "height": 128, "mode": "tiled", "wait": False}
    queued = client.post("/v1/renders", json=large, headers={"X-API-Key": b})
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["id"]
    store = api.state.context.store
    from core.largeformat.row_preview import JobPreview  # noqa: PLC0415

    add = JobPreview(store, job_id, owner="globex").canvas(256, 128)
    add(0, np.zeros((128, 256, 3), np.uint8))  # complete: stored at once
    assert client.get(f"/ui/jobs/{job_id}/preview.png").status_code == 404  # globex's
    sign_in(client, b)
    shown = client.get(f"/ui/jobs/{job_id}/preview.png")
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    view = next(j for j in client.get("/ui/jobs.json").json()["jobs"] if j["id"] == job_id)
    assert view["preview"]["rows_done"] == 128 and view["preview"]["version"] == "1-128"
    JobPreview(store, job_id, owner="acme").canvas(256, 128)(0, np.zeros((128, 256, 3), np.uint8))
    assert client.get(f"/ui/jobs/{job_id}/preview.png").status_code == 404  # owner differs
