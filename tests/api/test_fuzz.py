"""Schemathesis against the app's own OpenAPI schema, in-process: no input makes a 5xx,
and every answer (status, media type, body) is the one the schema documents.

Every operation gets a bounded number of generated requests (`FUZZ_EXAMPLES`, default
25), so the run stays within a few minutes on two cores. Keys are on (the fuzzer's
requests carry a valid key), so the whole surface behind the gate is exercised.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.tenants import TenantLimits, add_key
from serve.api_app import api
from tests.api.inprocess import config_for, install

CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
schema = schemathesis.openapi.from_asgi("/openapi.json", api)
schema.config.generation.update(modes=list(GenerationMode))  # valid and invalid inputs


@pytest.fixture(scope="module")
def fuzz_key(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    key = add_key(root / "keys.yaml", "fuzz", TenantLimits())
    return root, key


@pytest.fixture
def app_installed(fuzz_key, monkeypatch):
    root, key = fuzz_key
    install(config_for(root / "store", {"keys_file": str(root / "keys.yaml")}), monkeypatch)
    return key


def no_server_error(response, case) -> None:
    assert response.status_code < 500, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}"
    )


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_a_server_error(case, app_installed):
    headers = {"Authorization": f"Bearer {app_installed}"}
    response = case.call(headers=headers)
    no_server_error(response, case)
    assert "Traceback" not in response.text and "/tmp/" not in response.text
    case.validate_response(response, checks=CONFORMANCE, headers=headers)
