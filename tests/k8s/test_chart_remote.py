"""Hosted models (family remote) in the chart: no GPU booked, keys only from Secrets."""

from __future__ import annotations

import copy
from typing import Any

import helm_python
import pytest
import yaml
from k8s_support import containers, objects, one, render, validate, values_for

from core.config_file import config_from_dict
from core.deployment_options import serve_deployments

LAYOUT = {
    "family": "remote",
    "remote": {
        "provider": "ideogram",
        "model": "V_2",
        "api_key_env": "IDEOGRAM_API_KEY",
        "max_concurrency": 4,
        "requests_per_minute": 60,
        "timeout_s": 120,
        "cost_per_image": 0.08,
    },
}
HERO = {"family": "remote", "remote": {"provider": "imagen", "model": "imagen-4.0-generate-001"}}


def hosted_values(**secrets: Any) -> dict[str, Any]:
    values = copy.deepcopy(values_for("ci"))
    values["cluster"]["models"].update({"layout-ideogram": LAYOUT, "hero-imagen": HERO})
    values["secrets"] = {"providers": secrets}
    return values


def serve_app(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (app,) = yaml.safe_load(one(objs, "RayService")["spec"]["serveConfigV2"])["applications"]
    return app


def key_refs(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The secretKeyRef of every hosted-model key variable in every Ray container."""
    found = []
    for container in containers(one(objs, "RayService")):
        for env in container.get("env", []):
            if env["name"] in ("IDEOGRAM_API_KEY", "GEMINI_API_KEY"):
                found.append({env["name"]: env["valueFrom"]["secretKeyRef"]})
    return found


def test_hosted_models_book_no_gpu_and_match_the_code_s_deployments():
    objs = objects(render(hosted_values(existingSecret="provider-keys")))
    for obj in objs:
        validate(obj)
    app = serve_app(objs)
    deployments = {d["name"]: d for d in app["deployments"]}
    for name in ("model-layout-ideogram", "model-hero-imagen"):
        assert deployments[name]["ray_actor_options"]["num_gpus"] == 0
    config = config_from_dict(app["args"]["config"])
    assert sorted(app["deployments"], key=lambda d: d["name"]) == sorted(
        serve_deployments(config), key=lambda d: d["name"]
    )
    assert config.models["layout-ideogram"].source == "remote:ideogram/V_2"
    assert config.models["hero-imagen"].remote.key_env == "GEMINI_API_KEY"


def test_keys_come_from_the_existing_secret_under_their_variable_names():
    objs = objects(render(hosted_values(existingSecret="provider-keys")))
    refs = key_refs(objs)
    ray_containers = [c for c in containers(one(objs, "RayService")) if "env" in c]
    assert len(refs) == 2 * len(ray_containers) >= 4  # both variables in every Ray pod
    assert {"IDEOGRAM_API_KEY": {"name": "provider-keys", "key": "IDEOGRAM_API_KEY"}} in refs
    assert {"GEMINI_API_KEY": {"name": "provider-keys", "key": "GEMINI_API_KEY"}} in refs
    assert "Secret" not in {obj["kind"] for obj in objs}


def test_keys_given_as_values_go_into_the_chart_s_secret_never_the_serve_config():
    keys = {"IDEOGRAM_API_KEY": "ideo-secret-123", "GEMINI_API_KEY": "gem-secret-456"}
    rendered = render(hosted_values(keys=keys))
    objs = objects(rendered)
    secret = one(objs, "Secret")
    assert secret["stringData"] == keys
    name = secret["metadata"]["name"]
    assert {"IDEOGRAM_API_KEY": {"name": name, "key": "IDEOGRAM_API_KEY"}} in key_refs(objs)
    rayservice = next(text for path, text in rendered.items() if path.endswith("rayservice.yaml"))
    assert "ideo-secret-123" not in rayservice and "gem-secret-456" not in rayservice


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({}, "hosted models reading GEMINI_API_KEY, IDEOGRAM_API_KEY but secrets.providers"),
        ({"keys": {"IDEOGRAM_API_KEY": "k"}}, "secrets.providers.keys has no GEMINI_API_KEY"),
        (
            {"existingSecret": "s", "keys": {"IDEOGRAM_API_KEY": "k"}},
            "secrets.providers: set existingSecret or keys, not both",
        ),
    ],
)
def test_hosted_models_without_their_keys_are_refused(secrets, message):
    with pytest.raises(helm_python.HelmError) as caught:
        render(hosted_values(**secrets))
    assert message in str(caught.value)


def test_a_hosted_model_needs_no_source_but_a_local_one_still_does():
    values = hosted_values(existingSecret="provider-keys")
    values["cluster"]["models"]["quality"].pop("source")
    with pytest.raises(helm_python.HelmError) as caught:
        render(values)
    assert "at '/cluster/models/quality': missing property 'source'" in str(caught.value)
