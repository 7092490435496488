"""`n` images from one POST /v1/renders (issue 15): seeds in order, a record each, sent
together so the model batches them; what n cannot be combined with is a 422 naming it."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from core.schemas import GenerateRequest, GenerateResult
from serve.api_app import api
from tests.api.inprocess import config_for, install


@pytest.fixture
def client(tmp_path, monkeypatch):
    renders = install(config_for(tmp_path / "store"), monkeypatch)
    in_flight: list[int] = []
    most = [0]

    async def seeded(model_name: str, request: GenerateRequest) -> GenerateResult:
        in_flight.append(request.seed)
        most[0] = max(most[0], len(in_flight))
        await asyncio.sleep(0.05)  # long enough for every sibling to be sent meanwhile
        in_flight.remove(request.seed)
        image = np.full((request.height, request.width, 3), request.seed % 251, np.uint8)
        return GenerateResult(image, request.seed, 0.001, 1, "fake-replica", ["0"])

    renders.calls.models._model_render = seeded
    with TestClient(api) as http:
        yield http, most


def pixel(answer: dict) -> int:
    image = Image.open(io.BytesIO(base64.b64decode(answer["image_base64"])))
    return int(np.asarray(image)[0, 0, 0])


def test_n_images_come_back_in_seed_order_each_with_its_own_record(client):
    http, most = client
    answer = http.post("/v1/renders", json={"prompt": "a cat", "n": 3, "seed": 40})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    images = body["images"]
    assert [image["seed"] for image in images] == [40, 41, 42]
    assert [pixel(image) for image in images] == [40, 41, 42]  # each its own render
    assert body["id"] == images[0]["id"] and len({image["id"] for image in images}) == 3
    for image in images:
        record = http.get(f"/v1/runs/{image['id']}").json()
        assert record["seed"] == image["seed"] and record["status"] == "done"
    assert most[0] == 3  # sent together: the model's batching sees them at once


def test_one_image_answers_as_before_without_images(client):
    http, _ = client
    body = http.post("/v1/renders", json={"prompt": "a cat", "seed": 5}).json()
    assert "images" not in body and body["seed"] == 5


@pytest.mark.parametrize(
    ("extra", "headers", "message"),
    [
        ({}, {"Accept": "image/png"}, "answers JSON"),
        ({}, {"Idempotency-Key": "k1"}, "replays one render"),
        ({"width": 1024, "height": 1024}, {}, "large-format render makes one image"),
    ],
)
def test_what_n_cannot_be_combined_with_is_a_422_naming_n(client, extra, headers, message):
    http, _ = client
    refused = http.post("/v1/renders", json={"prompt": "a", "n": 2, **extra}, headers=headers)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["field"] == "n" and message in error["message"]


def test_n_is_bounded(client):
    http, _ = client
    refused = http.post("/v1/renders", json={"prompt": "a", "n": 9})
    assert refused.status_code == 422 and "n" in refused.text
