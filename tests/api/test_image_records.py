"""A PNG, a JPEG and a TIFF from the API carry their run id and parameters (issue 14)."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from serve.api_app import api
from tests.api.inprocess import config_for, install
from tests.unit.test_image_metadata import parse_a1111, read_metadata


@pytest.fixture
def client(tmp_path, monkeypatch):
    install(config_for(tmp_path / "store"), monkeypatch)
    return TestClient(api)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff"])
def test_an_image_from_the_api_leads_back_to_its_record(client, fmt):
    body = {"prompt": "a red kite", "negative_prompt": "fog", "seed": 5, "steps": 2}
    answer = client.post("/v1/renders", json=body | {"format": fmt}).json()
    stored = client.get(answer["url"]).content
    assert stored == base64.b64decode(answer["image_base64"])
    found = read_metadata(stored)
    assert found["run_id"] == answer["id"]
    prompt, negative, settings = parse_a1111(found["parameters"])
    assert (prompt, negative) == ("a red kite", "fog")
    assert (settings["Seed"], settings["Steps"], settings["Size"]) == ("5", "2", "64x64")
    assert settings["Model"] == "tiny" and settings["Run id"] == answer["id"]
    record = client.get(f"/v1/runs/{answer['id']}").json()
    assert record["prompt"] == "a red kite" and record["seed"] == 5


def test_a_raw_image_answer_carries_it_too(client):
    body = {"prompt": "a red kite", "seed": 5, "steps": 2}
    response = client.post("/v1/renders", json=body, headers={"Accept": "image/jpeg"})
    assert read_metadata(response.content)["run_id"] == response.headers["X-Render-Id"]
