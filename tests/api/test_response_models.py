"""The OpenAPI schema is real: every JSON answer has a model, and real answers match it.

A tour of the routes in-process checks each answer against its documented schema:
it validates, and every key it holds is declared (an answer never grows a field the
schema does not name). The fuzz run (`test_fuzz.py`) checks the same for the inputs
it generates.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from serve.api_app import api
from tests.api.inprocess import config_for, install

SPEC = api.openapi()
COMPONENTS = SPEC["components"]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = COMPONENTS["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _operations():
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def _json_2xx(operation: dict[str, Any]):
    for code, response in operation["responses"].items():
        content = response.get("content", {})
        if code.startswith("2") and "application/json" in content:
            yield code, content["application/json"].get("schema", {})


def _declares_fields(schema: dict[str, Any]) -> bool:
    schema = _resolve(schema)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return all(_declares_fields(branch) for branch in branches)
    return bool(schema.get("properties"))


def test_every_json_2xx_answer_has_a_schema_with_fields():
    bare = [
        f"{method.upper()} {path} {code}"
        for path, method, operation in _operations()
        for code, schema in _json_2xx(operation)
        if not _declares_fields(schema)
    ]
    assert bare == []


def test_every_operation_documents_a_2xx_answer_and_its_errors():
    for path, method, operation in _operations():
        codes = operation["responses"]
        assert any(code.startswith("2") for code in codes), f"{method} {path}"
        if path not in ("/healthz", "/readyz"):
            assert "4XX" in codes and "HTTPValidationError" not in str(codes), f"{method} {path}"


def _undeclared(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Keys of `value` (recursively) that `schema` does not name."""
    schema = _resolve(schema)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        fits = [branch for branch in branches if _valid(value, branch)]
        return _undeclared(value, fits[0], where) if fits else [f"{where}: fits no branch"]
    if isinstance(value, dict) and "properties" in schema:
        found = [f"{where}.{key}" for key in value if key not in schema["properties"]]
        for key, item in value.items():
            if key in schema["properties"]:
                found += _undeclared(item, schema["properties"][key], f"{where}.{key}")
        return found
    if isinstance(value, list) and "items" in schema:
        return [name for item in value for name in _undeclared(item, schema["items"], where)]
    return []


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    return jsonschema.Draft202012Validator({**schema, "components": COMPONENTS}).is_valid(value)


def _documented(response, method: str, path: str) -> dict[str, Any]:
    """The response's JSON after checking it against the schema of its path and status."""
    operation = SPEC["paths"][path][method]
    schema = operation["responses"][str(response.status_code)]["content"]["application/json"]
    body = response.json()
    jsonschema.Draft202012Validator({**schema["schema"], "components": COMPONENTS}).validate(body)
    assert _undeclared(body, schema["schema"]) == [], f"{method} {path}"
    return body


@pytest.fixture
def client(tmp_path, monkeypatch):
    install(config_for(tmp_path / "store"), monkeypatch)
    return TestClient(api)


def test_real_answers_match_their_schemas(client):
    body = {"prompt": "a cat", "width": 64, "height": 64, "seed": 1}
    render = _documented(client.post("/v1/renders", json=body), "post", "/v1/renders")
    assert {"id", "seed", "url", "image_base64", "timings"} <= set(render)
    view = client.get(f"/v1/renders/{render['id']}")
    view_body = _documented(view, "get", "/v1/renders/{render_id}")
    assert "job" not in view_body and "error" not in view_body  # unset stays out
    assert view_body["result"]["url"].startswith("http")
    _documented(client.get(f"/v1/runs/{render['id']}"), "get", "/v1/runs/{run_id}")
    run = client.post("/v1/pipelines/two/runs", json={"prompt": "a cat"})
    assert run.status_code == 202
    run_body = _documented(run, "post", "/v1/pipelines/{name}/runs")
    assert run_body["stages"][0]["name"] == "base"
    got = client.get(f"/v1/pipelines/runs/{run_body['id']}")
    _documented(got, "get", "/v1/pipelines/runs/{run_id}")
    jobs = _documented(client.get("/v1/jobs"), "get", "/v1/jobs")
    assert jobs["jobs"][0]["location"] == f"/v1/jobs/{run_body['id']}"
    job = client.get(f"/v1/jobs/{run_body['id']}")
    assert _documented(job, "get", "/v1/jobs/{job_id}")["kind"] == "pipeline"
    cancelled = client.post(f"/v1/jobs/{run_body['id']}/cancel")
    _documented(cancelled, "post", "/v1/jobs/{job_id}/cancel")
    for path in ["/v1/models", "/v1/pipelines", "/v1/usage", "/v1/status", "/v1/runs"]:
        _documented(client.get(path), "get", path)


def test_campaign_answers_match_their_schemas(client):
    manifest = {"campaign": "spring", "items": [{"prompt": "a cat", "sizes": ["64x64"]}]}
    submitted = client.post("/v1/campaigns", json=manifest)
    assert submitted.status_code == 202
    _documented(submitted, "post", "/v1/campaigns")
    status = _documented(client.get("/v1/campaigns/spring"), "get", "/v1/campaigns/{name}")
    assert status["runner"] is None and "report_url" not in status
    report = client.post("/v1/campaigns/spring/report")
    assert "sig=" in _documented(report, "post", "/v1/campaigns/{name}/report")["report_url"]


def test_error_answers_match_their_schema(client):
    response = client.post("/v1/renders", json={"prompt": "a cat", "width": "wide"})
    assert response.status_code == 422
    schema = SPEC["paths"]["/v1/renders"]["post"]["responses"]["4XX"]["content"]
    assert _valid(response.json(), schema["application/json"]["schema"])


def test_a_path_no_route_matches_answers_in_the_error_shape(client):
    response = client.get("/v1/artifacts/a%0Ab")  # a newline: no route's path matches
    assert response.status_code == 404
    body = response.json()
    assert body["error"]["message"] == "Not Found" and "detail" not in body
    assert client.delete("/v1/jobs").json()["error"]["message"] == "Method Not Allowed"
