"""The chart renders, lints clean and every object it renders is valid."""

from __future__ import annotations

import json
import re

import helm_python
import pytest
import yaml
from k8s_support import (
    CHART,
    VALUES_FILES,
    containers,
    crd_validator,
    kuberay_problems,
    objects,
    one,
    render,
    validate,
    values_for,
)

from core.telemetry import METRICS

CASES = list(VALUES_FILES)


@pytest.mark.parametrize("case", CASES)
def test_lint_is_clean_in_strict_mode(case):
    report = helm_python.lint(CHART, values_for(case), strict=True, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("case", CASES)
def test_every_object_validates(case, rendered_objects):
    objs = rendered_objects[case]
    assert {"RayService", "ServiceAccount", "PodDisruptionBudget"} <= {o["kind"] for o in objs}
    for obj in objs:
        validate(obj)


def test_production_values_render_every_optional_object(rendered_objects):
    kinds = sorted(obj["kind"] for obj in rendered_objects["prod"])
    assert kinds == [
        "ConfigMap",
        "Ingress",
        "Pod",  # the helm test
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "RayService",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_validation_catches_a_misspelled_rayservice_field(rendered_objects):
    rayservice = one(rendered_objects["default"], "RayService")
    broken = yaml.safe_load(yaml.safe_dump(rayservice))
    broken["spec"]["rayClusterConfig"]["enableInTreeAutoscalling"] = True
    assert list(crd_validator("rayservices").iter_errors(broken))


@pytest.mark.parametrize("case", CASES)
def test_every_container_has_requests_and_limits(case, rendered_objects):
    for obj in rendered_objects[case]:
        if obj["kind"] != "RayService":
            continue
        found = containers(obj)
        assert len(found) >= 3  # head, a worker group, the autoscaler
        for container in found:
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), (container["name"], bound)


def test_long_release_names_fit_kuberay_and_kubernetes_limits():
    release = "a-release-name-long-enough-to-need-truncation-x"
    objs = objects(render(values_for("prod"), name=release))
    rayservice = one(objs, "RayService")
    assert not kuberay_problems(rayservice)
    assert rayservice["metadata"]["name"].startswith("a-release-name")
    named = [(obj["kind"], obj["metadata"]["name"]) for obj in objs]
    named.append(("Service", rayservice["spec"]["serveService"]["metadata"]["name"]))
    assert all(len(name) <= 63 and not name.endswith("-") for _, name in named), named
    assert len(set(named)) == len(named)  # unique within each kind


def test_a_release_name_kuberay_refuses_is_reported():
    with pytest.raises(helm_python.HelmError, match="not a DNS-1035 label"):
        render(None, name="1st-release")


def test_secrets_reach_every_ray_container_as_env(rendered_objects):
    objs = rendered_objects["prod"]
    secret = one(objs, "Secret")
    assert secret["stringData"] == {"API_KEYS": "key-one,key-two"}
    sources = {
        "AWS_ACCESS_KEY_ID": "render-s3",
        "AWS_SECRET_ACCESS_KEY": "render-s3",
        "HF_TOKEN": "render-hf",
        "RENDER_CLUSTER_API_KEYS": secret["metadata"]["name"],
    }
    ray_containers = [c for c in containers(one(objs, "RayService")) if "env" in c]
    assert len(ray_containers) == 3  # head, l4, a100
    for container in ray_containers:
        refs = {
            env["name"]: env["valueFrom"]["secretKeyRef"]["name"]
            for env in container["env"]
            if "valueFrom" in env
        }
        assert refs == sources


def test_default_install_creates_no_secret(rendered_objects):
    assert "Secret" not in {obj["kind"] for obj in rendered_objects["default"]}


def test_ingress_and_metrics_point_at_the_serve_and_ray_pods(rendered_objects):
    objs = rendered_objects["prod"]
    rayservice = one(objs, "RayService")
    serve_service = rayservice["spec"]["serveService"]["metadata"]["name"]
    (rule,) = one(objs, "Ingress")["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": serve_service, "port": {"name": "serve"}}
    metrics = one(objs, "Service")
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]
    assert metrics["spec"]["selector"].items() <= head["metadata"]["labels"].items()
    monitor = one(objs, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_disruption_budgets_select_the_head_and_each_worker_group(rendered_objects):
    objs = rendered_objects["prod"]
    cluster = one(objs, "RayService")["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster["workerGroupSpecs"]
    ]
    budgets = [obj for obj in objs if obj["kind"] == "PodDisruptionBudget"]
    for budget, template in zip(budgets, templates, strict=True):
        selector = budget["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
    # The defaults never block a node drain: one head or one worker per group may go.
    assert [budget["spec"]["maxUnavailable"] for budget in budgets] == [1, 1, 1]


def test_notes_tell_how_to_reach_the_api(rendered):
    notes = rendered["default"]["render-cluster/templates/NOTES.txt"]
    assert "kubectl -n render port-forward svc/rc-render-cluster-serve-svc 8000:8000" in notes
    assert "/healthz" in notes and "/v1/models" in notes
    assert 'model "tiny" is the random-weight test model' in notes
    prod_notes = rendered["prod"]["render-cluster/templates/NOTES.txt"]
    assert "https://render.example.com/healthz" in prod_notes
    assert "Authorization: Bearer" in prod_notes
    assert "random-weight" not in prod_notes


def test_the_metrics_keep_their_names_and_the_dashboard_charts_every_one(rendered_objects):
    objs = rendered_objects["prod"]
    (endpoint,) = one(objs, "ServiceMonitor")["spec"]["endpoints"]
    (relabel,) = endpoint["metricRelabelings"]
    assert re.sub(relabel["regex"], relabel["replacement"].replace("$1", r"\1"),
                  "ray_rendercluster_tiles_total") == "rendercluster_tiles_total"  # fmt: skip
    dashboard = one(objs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["render-cluster.json"])["panels"]
    queries = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    for name in METRICS:
        assert name in queries, name
    assert "ray_" not in queries
