"""values.schema.json is generated from the pydantic models; bad values are refused clearly."""

from __future__ import annotations

import copy
import importlib.util
import json
from typing import Any

import helm_python
import jsonschema
import pytest
from k8s_support import CHART, ROOT, VALUES_FILES, load_yaml, render, values_for

from core.config_file import config_from_dict
from core.errors import ConfigError
from core.helm_values import ChartValues


def _generator():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "gen_values_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_up_to_date(tmp_path):
    _generator().main(tmp_path)
    for relative in ("values.schema.json", "files/model-defaults.json"):
        committed = (CHART / relative).read_text()
        assert committed == (tmp_path / relative).read_text(), (
            f"helm/render-cluster/{relative} is stale: run python scripts/gen_values_schema.py"
        )


@pytest.mark.parametrize("case", list(VALUES_FILES))
def test_values_are_valid_chart_values(case):
    """Both the pydantic models and a second schema validator accept the merged values."""
    with helm_python.Chart.load(CHART) as chart:
        merged = chart.merge_values(values_for(case))
    ChartValues.model_validate(merged)
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(merged)


IMAGE_CHECKOUT = "/home/ray/render-cluster"  # k8s/Dockerfile's WORKDIR


def test_ci_values_run_the_local_config_on_cpus():
    local = load_yaml(ROOT / "configs" / "local.yaml")
    cluster = values_for("ci")["cluster"]
    assert cluster["models"].pop("tiny") is None
    for name, model in local["models"].items():
        source = model["source"]  # a model folder of the checkout is in the image's
        if source.startswith("models/"):
            source = f"{IMAGE_CHECKOUT}/{source}"
        assert cluster["models"][name] == {**model, "source": source, "gpus_per_replica": 0}
    assert {k: v for k, v in cluster.items() if k != "models"} == {
        k: v for k, v in local.items() if k not in ("models", "storage", "http")
    }


def refused(values: dict[str, Any]) -> str:
    """The message Helm gives for values it refuses (schema or template check)."""
    with pytest.raises(helm_python.HelmError) as caught:
        render(values)
    return str(caught.value)


def ci_values(**changes: Any) -> dict[str, Any]:
    values = copy.deepcopy(values_for("ci"))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = values
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[leaf] = value
    return values


def test_a_model_without_a_source_is_refused_by_the_schema():
    values = ci_values(cluster__models__quality={"family": "sd", "default_steps": 4})
    message = refused(values)
    assert "values don't meet the specifications of the schema" in message
    assert "at '/cluster/models/quality': missing property 'source'" in message


def test_a_malformed_source_is_refused_by_the_schema():
    message = refused(ci_values(cluster__models__quality__source="huggingface please"))
    assert "/cluster/models/quality/source" in message and "does not match pattern" in message


def test_max_below_min_replicas_is_refused_like_the_config_refuses_it():
    values = ci_values(cluster__models__fast__autoscaling={"min_replicas": 3, "max_replicas": 2})
    message = refused(values)
    assert (
        "cluster.models.fast.autoscaling: max_replicas (2) must be >= min_replicas (3)" in message
    )
    cluster = copy.deepcopy(values["cluster"])
    del cluster["models"]["tiny"]  # Helm drops nulls; pydantic would refuse them
    with pytest.raises(ConfigError, match=r"max_replicas \(2\) must be >= min_replicas \(3\)"):
        config_from_dict(cluster)


def test_a_style_naming_no_model_is_refused():
    values = ci_values(cluster__styles__poster="nope")
    message = refused(values)
    assert "cluster.styles: styles name models that are not defined: 'poster' -> 'nope'" in message
    assert "(models: fast, quality, scenes, upscaler)" in message


def test_every_problem_is_listed_at_once():
    values = ci_values(
        cluster__styles__poster="nope",
        cluster__default_style="missing",
        workerGroups__0__minReplicas=3,
    )
    message = refused(values)
    assert "styles name models that are not defined" in message
    assert "default_style 'missing' is not one of the styles" in message
    assert "workerGroups[0] (cpu): maxReplicas (2) must be >= minReplicas (3)" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"cluster__models__quality__gpus_per_replica": 1},
            "cluster.models.quality: gpus_per_replica (1) is more than any worker group has",
        ),
        (
            {"cluster__models__quality__autoscaling__initial_replicas": 9},
            "initial_replicas (9) must lie between min_replicas (1) and max_replicas (4)",
        ),
        (
            {"cluster__storage": {"kind": "s3"}},
            "cluster.storage: bucket is required when kind is 's3'",
        ),
        (
            {"secrets": {"apiKeys": {"keys": ["k"]}}},
            "secrets.apiKeys is set but cluster.auth.api_keys_env is not",
        ),
        (
            {"cluster__auth": {"api_keys_env": "KEYS"}},
            "cluster.auth.api_keys_env is KEYS but secrets.apiKeys has neither",
        ),
        (
            {"secrets": {"s3": {"accessKeyId": "id"}}},
            "secrets.s3: accessKeyId and secretAccessKey go together",
        ),
        (
            {"upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"}},
            "NewClusterWithIncrementalUpgrade needs clusterUpgradeOptions",
        ),
        (
            {"autoscaler__version": "v1", "workerGroups__0__idleTimeoutSeconds": 30},
            "workerGroups[0] (cpu): idleTimeoutSeconds needs autoscaler.version v2",
        ),
    ],
)
def test_cross_field_rules_are_refused_with_a_readable_message(changes, expected):
    assert expected in refused(ci_values(**changes))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"cluster__http": {"port": 9000}}, "additional properties 'http' not allowed"),
        ({"workerGroups__0__gpus": 1}, "additional properties 'gpus' not allowed"),
        ({"workerGroups__0__resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}, "'requests'"),
        ({"head__resources__limits__memory": "lots"}, "/head/resources/limits/memory"),
        ({"workerGroups": []}, "/workerGroups"),
    ],
)
def test_schema_refuses_unknown_keys_and_bad_types(changes, expected):
    assert expected in refused(ci_values(**changes))
