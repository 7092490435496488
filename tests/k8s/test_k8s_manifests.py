"""k8s/ manifests validate; versions agree across pyproject, image, chart and operator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from k8s_support import CHART, DATA, ROOT, validate

MANIFESTS = sorted(
    p for p in (ROOT / "k8s").glob("*.yaml") if p.name != "kuberay-operator-values.yaml"
)
SHARED_CRDS = ROOT.parent / "shared" / "crds"


def test_the_manifests_are_there():
    names = {path.name for path in MANIFESTS}
    assert {"namespace.yaml", "rbac-cli.yaml", "rayjob-campaign.yaml", "gpu-check.yaml"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates(path: Path):
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert docs
    for doc in docs:
        validate(doc)


def test_rbac_grants_what_the_cli_calls():
    docs = list(yaml.safe_load_all((ROOT / "k8s" / "rbac-cli.yaml").read_text()))
    (role,) = [doc for doc in docs if doc["kind"] == "Role"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {
        ("ray.io", "rayservices", "get"),
        ("ray.io", "rayservices", "list"),
        ("ray.io", "rayjobs", "create"),
        ("", "pods", "list"),
    }
    assert needed <= granted


def test_ray_version_is_the_same_in_pyproject_image_and_chart():
    pyproject = (ROOT / "pyproject.toml").read_text()
    (pinned,) = re.findall(r'"ray\[serve\]==([0-9.]+)"', pyproject)
    dockerfile = (ROOT / "k8s" / "Dockerfile").read_text()
    assert f"ARG RAY_VERSION={pinned}\n" in dockerfile
    assert "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-gpu" in dockerfile
    (torch,) = re.findall(r'"torch==([0-9.]+)"', pyproject)
    assert f"torch=={torch}" in dockerfile
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["rayVersion"] == pinned


def test_operator_is_pinned_to_kuberay_1_7_0():
    values = yaml.safe_load((ROOT / "k8s" / "kuberay-operator-values.yaml").read_text())
    assert values["image"]["tag"] == "v1.7.0"
    assert {"requests", "limits"} <= set(values["resources"])
    text = (ROOT / "k8s" / "kuberay-operator-values.yaml").read_text()
    assert "--version 1.7.0" in text
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["annotations"]["render-cluster/kuberay-version"] == "1.7.0"


@pytest.mark.skipif(not SHARED_CRDS.is_dir(), reason="../shared/crds is not checked out")
@pytest.mark.parametrize("plural", ["rayservices", "rayjobs"])
def test_crd_schema_copies_match_the_shared_crds(plural):
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((SHARED_CRDS / f"ray.io_{plural}.yaml").read_text(), Loader=loader)
    (v1,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    copy = json.loads((DATA / "crds" / f"{plural}.json").read_text())
    assert copy == v1["schema"]["openAPIV3Schema"], "run python scripts/extract_crd_schemas.py"
