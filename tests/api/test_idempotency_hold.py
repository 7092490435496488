"""An `Idempotency-Key` is held by the first request that sends it, until that one ends.

Another request with the key meanwhile gets a 409 with Retry-After (never a second
render or job), however long the first one runs; a request that creates nothing lets
the key go.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi.testclient import TestClient

from core.schemas import RenderRequestBody
from serve.api_app import api
from tests.api.inprocess import config_for, flat_render, install

RENDER = {"prompt": "a cat", "width": 64, "height": 64, "seed": 5}


@pytest.fixture
def client(tmp_path, monkeypatch):
    renders = install(config_for(tmp_path / "store"), monkeypatch)
    with TestClient(api) as http:
        yield http, renders.jobs.jobs


def test_a_key_held_by_a_request_in_flight_is_a_409_with_retry_after(client):
    http, jobs = client
    key_body = RenderRequestBody.model_validate(RENDER).model_dump(mode="json")
    assert jobs.reserve("k1", None, key_body, holder="a request on another replica") is None
    held = http.post("/v1/renders", json=RENDER, headers={"Idempotency-Key": "k1"})
    assert held.status_code == 409, held.text
    assert held.headers["retry-after"] == "1"
    assert held.json()["error"]["field"] == "Idempotency-Key"
    assert "still in progress" in held.json()["error"]["message"]
    assert http.get("/v1/runs").json()["runs"] == []  # nothing rendered for it
    other = http.post("/v1/renders", json=RENDER | {"seed": 6}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409 and "different request body" in other.text
    jobs.release("k1", None, holder="a request on another replica")  # it failed
    first = http.post("/v1/renders", json=RENDER, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 200, first.text
    again = http.post("/v1/renders", json=RENDER, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert len(http.get("/v1/runs").json()["runs"]) == 1


def test_a_request_that_creates_nothing_lets_its_key_go(client):
    http, _ = client
    headers = {"Idempotency-Key": "k2"}
    broken = http.post("/v1/campaigns", json={"campaign": "c1", "items": []}, headers=headers)
    assert broken.status_code == 422, broken.text
    manifest = {"campaign": "c1", "items": [{"prompt": "a cat", "sizes": ["64x64"]}]}
    started = http.post("/v1/campaigns", json=manifest, headers=headers)
    assert started.status_code == 202, started.text
    replayed = http.post("/v1/campaigns", json=manifest, headers=headers)
    assert replayed.status_code == 202 and replayed.json() == started.json()
    unknown = RENDER | {"model": "nope"}  # refused by an error raised after the key is held
    refused = http.post("/v1/renders", json=unknown, headers={"Idempotency-Key": "k3"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "model"
    rendered = http.post("/v1/renders", json=RENDER, headers={"Idempotency-Key": "k3"})
    assert rendered.status_code == 200, rendered.text
    too_long = http.post("/v1/renders", json=RENDER, headers={"Idempotency-Key": "x" * 256})
    assert too_long.status_code == 422 and "1 to 255 characters" in too_long.text


def test_a_render_that_outlasts_a_holds_life_keeps_its_key(tmp_path, monkeypatch):
    monkeypatch.setattr("core.jobs.store.HELD_FOR_S", 0.5)  # a hold older looks dead
    monkeypatch.setattr("serve.idempotency.RENEW_EVERY_S", 0.1)
    started = threading.Event()

    async def slow_render(model_name, request):
        started.set()
        await asyncio.sleep(1.5)  # three times the hold's life
        return await flat_render(model_name, request)

    monkeypatch.setattr("tests.api.inprocess.flat_render", slow_render)
    install(config_for(tmp_path / "store"), monkeypatch)
    headers = {"Idempotency-Key": "k4"}
    with TestClient(api) as http:
        answers = []
        first = threading.Thread(
            target=lambda: answers.append(http.post("/v1/renders", json=RENDER, headers=headers))
        )
        first.start()
        assert started.wait(timeout=30)
        time.sleep(1.0)  # past the first term: without renewals a retry would take over
        retry = http.post("/v1/renders", json=RENDER, headers=headers)
        first.join(timeout=60)
        assert retry.status_code == 409 and "still in progress" in retry.text, retry.text
        (done,) = answers
        assert done.status_code == 200, done.text
        replayed = http.post("/v1/renders", json=RENDER, headers=headers)
        assert replayed.status_code == 200 and replayed.json()["id"] == done.json()["id"]
        assert len(http.get("/v1/runs").json()["runs"]) == 1


def test_a_failed_renewal_does_not_fail_the_render(tmp_path, monkeypatch):
    monkeypatch.setattr("serve.idempotency.RENEW_EVERY_S", 0.05)

    async def slow_render(model_name, request):
        await asyncio.sleep(0.3)
        return await flat_render(model_name, request)

    def broken_renew(self, key, owner, holder):
        raise OSError("the store is unreachable")

    monkeypatch.setattr("tests.api.inprocess.flat_render", slow_render)
    monkeypatch.setattr("core.jobs.store.JobStore.renew", broken_renew)
    install(config_for(tmp_path / "store"), monkeypatch)
    headers = {"Idempotency-Key": "k5"}
    with TestClient(api) as http:
        done = http.post("/v1/renders", json=RENDER, headers=headers)
        assert done.status_code == 200, done.text
        replayed = http.post("/v1/renders", json=RENDER, headers=headers)
        assert replayed.status_code == 200 and replayed.json()["id"] == done.json()["id"]
