"""Rendering and validation helpers for the Kubernetes tests (no API server needed).

- core kinds: `kubernetes-validate`, strict (unknown fields fail), Kubernetes 1.30;
- RayService / RayJob: the KubeRay 1.7.0 CRD schemas copied under data/crds,
  made strict the way the API server's `fieldValidation=Strict` is;
- the checks KubeRay's operator runs on top of its schema (name lengths, ...).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "render-cluster"
DATA = Path(__file__).resolve().parent / "data"
KUBE_VERSION = "1.30.0"
CUSTOM_KINDS = {("ray.io/v1", "RayService"): "rayservices", ("ray.io/v1", "RayJob"): "rayjobs"}
# Kinds whose schema is neither in Kubernetes nor in data/crds: checked field by field.
UNVALIDATED_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
VALUES_FILES = {
    "default": None,
    "ci": CHART / "ci" / "dev-cpu-values.yaml",
    "gpu": CHART / "ci" / "gpu-values.yaml",
    "prod": DATA / "prod-values.yaml",
}
MAX_KUBERAY_NAME = 47
DNS_1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def values_for(case: str) -> dict[str, Any] | None:
    """The values of one VALUES_FILES case (None: the chart's defaults)."""
    path = VALUES_FILES[case]
    return load_yaml(path) if path else None


def render(values: dict[str, Any] | None, name: str = "rc", namespace: str = "render") -> dict:
    """Template path -> rendered text (empty templates included)."""
    with helm_python.Chart.load(CHART) as chart:
        return chart.render(values, name=name, namespace=namespace)


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in rendered templates (NOTES.txt excluded)."""
    found = []
    for source, text in rendered.items():
        if source.endswith("NOTES.txt"):
            continue
        found += [doc for doc in yaml.safe_load_all(text) if doc]
    return found


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (match,) = [obj for obj in objs if obj["kind"] == kind]
    return match


def validate(obj: dict[str, Any]) -> None:
    """Raise unless `obj` is valid for its kind (see the module docstring)."""
    key = (obj["apiVersion"], obj["kind"])
    if key in UNVALIDATED_KINDS:
        return
    if key in CUSTOM_KINDS:
        crd_validator(CUSTOM_KINDS[key]).validate(obj)
        problems = kuberay_problems(obj)
        assert not problems, problems
        for template in pod_templates(obj):
            validate_pod_template(template)
        return
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def validate_pod_template(template: dict[str, Any]) -> None:
    """A pod template embedded in a custom resource, checked as a core PodTemplate."""
    wrapper = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "embedded"},
        "template": template,
    }
    kubernetes_validate.validate(wrapper, KUBE_VERSION, strict=True)


@cache
def crd_validator(plural: str) -> jsonschema.protocols.Validator:
    schema = json.loads((DATA / "crds" / f"{plural}.json").read_text())
    return jsonschema.Draft7Validator(strict_schema(schema))


def strict_schema(node: Any) -> Any:
    """Reject unknown fields wherever the CRD lists the fields (as the API server does)."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    strict = {key: strict_schema(value) for key, value in node.items()}
    open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and not open_ended:
        strict["additionalProperties"] = False
    return strict


def ray_cluster_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj["spec"]
    return spec.get("rayClusterConfig") or spec.get("rayClusterSpec")


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Head, worker and submitter pod templates of a RayService or RayJob."""
    templates = []
    cluster = ray_cluster_spec(obj)
    if cluster:
        templates.append(cluster["headGroupSpec"]["template"])
        templates += [group["template"] for group in cluster.get("workerGroupSpecs", [])]
    if "submitterPodTemplate" in obj["spec"]:
        templates.append(obj["spec"]["submitterPodTemplate"])
    return templates


def kuberay_problems(obj: dict[str, Any]) -> list[str]:
    """What KubeRay 1.7's validation (utils/validation.go) would refuse, beyond the schema."""
    problems = []
    name = obj["metadata"]["name"]
    if len(name) > MAX_KUBERAY_NAME or not re.match(DNS_1035, name):
        problems.append(f"{obj['kind']} name {name!r}: a DNS-1035 label of <= 47 characters")
    cluster = ray_cluster_spec(obj)
    if cluster:
        groups = [("head", cluster["headGroupSpec"])] + [
            (g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])
        ]
        v2 = cluster.get("autoscalerOptions", {}).get("version") == "v2"
        for group_name, group in groups:
            pod = group["template"]["spec"]
            if not pod.get("containers"):
                problems.append(f"group {group_name}: no container")
            params = group.get("rayStartParams", {})
            ray_resources = {"num-cpus", "num-gpus", "memory", "resources"} & set(params)
            if ray_resources and group.get("resources"):
                problems.append(f"group {group_name}: resources in rayStartParams and resources")
            if v2 and pod.get("restartPolicy", "Never") != "Never":
                problems.append(f"group {group_name}: autoscaler v2 needs restartPolicy Never")
            if group.get("minReplicas", 0) > group.get("maxReplicas", 2**31):
                problems.append(f"group {group_name}: minReplicas > maxReplicas")
    selector = obj["spec"].get("clusterSelector")
    if obj["kind"] == "RayJob":
        if not cluster and not (selector or {}).get("ray.io/cluster"):
            problems.append("RayJob: clusterSelector needs ray.io/cluster (or rayClusterSpec)")
        if selector and obj["spec"].get("backoffLimit", 0) > 0:
            problems.append("RayJob: backoffLimit is incompatible with clusterSelector")
    return problems


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container an object runs (pod templates, autoscaler sidecar)."""
    found = []
    for template in pod_templates(obj):
        spec = template["spec"]
        found += spec.get("initContainers", []) + spec["containers"]
    cluster = ray_cluster_spec(obj)
    if cluster and cluster.get("enableInTreeAutoscaling"):
        found.append({"name": "autoscaler", **cluster.get("autoscalerOptions", {})})
    return found
