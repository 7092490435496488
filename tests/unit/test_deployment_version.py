"""Model deployments carry a version derived from what their replicas run."""

from __future__ import annotations

from pathlib import Path

from core.config_file import load_config
from core.deployment_options import SERVE_ONLY_FIELDS
from serve.app import application, model_server
from serve.deployment_version import code_digest, deployment_version
from serve.model_server import ModelServer
from serve.upscaler_server import UpscalerServer


def model_versions(app) -> dict[str, str]:
    """The version of each model deployment bound into the ingress of `app`."""
    handles = app._bound_deployment.init_args[1]
    return {name: bound._bound_deployment.version for name, bound in handles.items()}


def test_the_same_config_gives_the_same_versions_and_a_changed_model_only_its_own():
    config = load_config("configs/local.yaml")
    first, again = model_versions(application(config)), model_versions(application(config))
    assert first == again and len(set(first.values())) == len(config.models)
    data = config.model_dump(mode="json")
    data["models"]["quality"]["max_pixels_per_call"] = 300 * 300
    changed = model_versions(application(type(config).model_validate(data)))
    assert changed["quality"] != first["quality"]
    assert {n: v for n, v in changed.items() if n != "quality"} == {
        n: v for n, v in first.items() if n != "quality"
    }


def test_serve_options_change_no_version_and_reach_the_deployment_not_its_replicas():
    config = load_config("configs/local.yaml")
    data = config.model_dump(mode="json")
    quality = data["models"]["quality"]
    quality["autoscaling"].update(min_replicas=4, max_replicas=4)
    quality.update(max_ongoing_requests=1, max_queued_requests=1)
    scaled = application(type(config).model_validate(data))
    assert model_versions(scaled) == model_versions(application(config))
    bound = scaled._bound_deployment.init_args[1]["quality"]._bound_deployment
    assert bound.max_ongoing_requests == 1
    assert bound._deployment_config.autoscaling_config.min_replicas == 4
    assert not SERVE_ONLY_FIELDS & set(bound.init_args[1])
    assert bound.init_args[1]["batching"] == quality["batching"]


def test_a_version_follows_the_server_the_arguments_and_the_code():
    args = ("quality", {"source": "tiny:0"}, "/cache")
    version = deployment_version(ModelServer.func_or_class, "model-quality", args, "c1")
    assert version == deployment_version(ModelServer.func_or_class, "model-quality", args, "c1")
    assert version != deployment_version(UpscalerServer.func_or_class, "model-quality", args, "c1")
    assert version != deployment_version(ModelServer.func_or_class, "model-quality", args, "c2")
    other = ("quality", {"source": "tiny:1"}, "/cache")
    assert version != deployment_version(ModelServer.func_or_class, "model-quality", other, "c1")


def test_the_code_digest_changes_with_a_replica_package_file_and_nothing_else(tmp_path: Path):
    for package in ("core", "serve", "actors", "cli"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "module.py").write_text("X = 1\n")
    digest = code_digest(tmp_path)
    assert digest == code_digest(tmp_path)
    (tmp_path / "cli" / "module.py").write_text("X = 2\n")  # the CLI runs in no replica
    (tmp_path / "serve" / "notes.txt").write_text("not code")
    assert code_digest(tmp_path) == digest
    (tmp_path / "serve" / "module.py").write_text("X = 2\n")
    assert code_digest(tmp_path) != digest
    (tmp_path / "serve" / "module.py").write_text("X = 1\n")
    (tmp_path / "serve" / "module.py").rename(tmp_path / "serve" / "renamed.py")
    assert code_digest(tmp_path) != digest


def test_a_bound_model_server_carries_its_version():
    config = load_config("configs/local.yaml")
    bound = model_server("quality", config.models["quality"], "/cache", "c1")
    model = config.models["quality"].model_dump(mode="json", exclude=set(SERVE_ONLY_FIELDS))
    args = ("quality", model, "/cache")
    expected = deployment_version(ModelServer.func_or_class, "model-quality", args, "c1")
    assert bound._bound_deployment.version == expected
    assert (
        bound._bound_deployment.max_ongoing_requests
        == config.models["quality"].max_ongoing_requests
    )
