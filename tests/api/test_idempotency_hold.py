"""An `Idempotency-Key` is held by the first request that sends it, until that one ends.

Another request with the key meanwhile gets a 409 with Retry-After (never a second
render or job); a request that creates nothing lets the key go.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.schemas import RenderRequestBody
from serve.api_app import api
from tests.api.inprocess import config_for, install

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
