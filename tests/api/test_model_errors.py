"""A model's own failure reaches the client as a reason it can act on, never a black image."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.errors import ModelOutputError
from core.schemas import GenerateRequest, GenerateResult
from serve.api_app import api
from tests.api import inprocess


async def nan_render(model_name: str, request: GenerateRequest) -> GenerateResult:
    raise ModelOutputError(model_name, request.width * request.height * 3, "float16")


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setattr(inprocess, "flat_render", nan_render)
    inprocess.install(inprocess.config_for(tmp_path), monkeypatch)
    return TestClient(api, raise_server_exceptions=False)


def test_nan_pixels_are_a_500_that_names_the_dtype_to_use(client):
    response = client.post("/v1/renders", json={"prompt": "a", "width": 64, "height": 64})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error == {
        "field": "model",
        "message": "model 'tiny' returned 12288 NaN or infinite pixel values in float16: "
        "its weights overflow at that precision; set its dtype to bfloat16 or float32",
    }
    assert "Traceback" not in response.text
