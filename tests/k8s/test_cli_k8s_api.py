"""`rendercluster k8s status|submit-campaign` against an API server (tests/k8s/fake_kube_api.py).

The RayService the fake server holds is the chart's own (production values) with
the status KubeRay 1.7 writes, checked against the CRD before it is served.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_kube_api import TOKEN, FakeKubeAPI, pod, serving
from k8s_support import one, validate
from typer.testing import CliRunner

from cli.exit_codes import ExitCode
from cli.k8s import app

runner = CliRunner()
NAMESPACE = "render"
ACTIVE = "rc-render-cluster-x7k2p"
OLD = "rc-render-cluster-q9z4m"
IMAGE = "registry.example.com/render/render-cluster:0.1.0"
MANIFEST = b"name: spring\nitems:\n  - prompt: a lighthouse at dawn\n    sizes: ['1:1']\n"
RAYSERVICES = r"^/apis/ray\.io/v1/namespaces/render/rayservices"
RAYJOBS = r"^/apis/ray\.io/v1/namespaces/render/rayjobs$"
PODS = r"^/api/v1/namespaces/render/pods$"
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-05T09:31:00Z",
    }


@pytest.fixture
def rayservice(rendered_objects) -> dict[str, Any]:
    """The chart's RayService as the API server returns it once KubeRay has served it."""
    obj = copy.deepcopy(one(rendered_objects["prod"], "RayService"))
    obj["metadata"] |= {
        "namespace": NAMESPACE,
        "uid": "5f0c2b9e-6c1d-4f51-9a43-0d8a3f2b7e11",
        "resourceVersion": "48213",
        "generation": 3,
        "creationTimestamp": "2026-01-05T09:30:00Z",
    }
    obj["status"] = {
        "serviceStatus": "Running",
        "numServeEndpoints": 2,
        "observedGeneration": 3,
        "conditions": [
            condition("Ready", "True", "NonZeroServeEndpoints", "Number of serve endpoints: 2"),
            condition("UpgradeInProgress", "False", "NoPendingCluster"),
        ],
        "activeServiceStatus": {
            "rayClusterName": ACTIVE,
            "applicationStatuses": {
                "render-cluster": {
                    "status": "RUNNING",
                    "serveDeploymentStatuses": {
                        "ingress": {"status": "HEALTHY"},
                        "model-sdxl": {"status": "UPSCALING", "message": "2 -> 4 replicas"},
                        "model-flux": {"status": "HEALTHY"},
                    },
                }
            },
        },
    }
    validate(obj)
    return obj


@pytest.fixture
def kube(tmp_path, monkeypatch, rayservice) -> Iterator[FakeKubeAPI]:
    """A fake API server holding the RayService and its pods; KUBECONFIG points at it."""
    for variable in ("KUBERNETES_SERVICE_HOST", *PROXY_VARIABLES):
        monkeypatch.delenv(variable, raising=False)
    with serving() as api:
        api.add(rayservice)
        pods = [
            ("head", ACTIVE, "headgroup", "Running"),
            ("l4-a", ACTIVE, "l4", "Running"),
            ("l4-b", ACTIVE, "l4", "Pending"),
            ("a100-a", ACTIVE, "a100", "Running"),
            ("old-l4", OLD, "l4", "Running"),  # the cluster an upgrade replaced: not shown
        ]
        for suffix, cluster, group, phase in pods:
            api.add(pod(f"{cluster}-{suffix}", NAMESPACE, cluster, group, phase, IMAGE))
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig", namespace=NAMESPACE)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        yield api


@pytest.fixture
def manifest(tmp_path) -> Path:
    path = tmp_path / "spring.yaml"
    path.write_bytes(MANIFEST)
    return path


def assert_clean(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


# ---------------------------------------------------------------- status


def test_status_json_shows_conditions_applications_and_pods(kube):
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert_clean(result)
    shown = json.loads(result.stdout)
    assert shown["name"] == "rc-render-cluster"
    assert shown["namespace"] == NAMESPACE  # the kubeconfig context's
    assert shown["active_cluster"] == ACTIVE
    assert shown["pending_cluster"] is None
    assert shown["conditions"] == [
        ["Ready", "True", "NonZeroServeEndpoints", "Number of serve endpoints: 2"],
        ["UpgradeInProgress", "False", "NoPendingCluster", ""],
    ]
    assert shown["applications"] == [
        ["render-cluster", "RUNNING", ""],
        ["render-cluster/ingress", "HEALTHY", ""],
        ["render-cluster/model-flux", "HEALTHY", ""],
        ["render-cluster/model-sdxl", "UPSCALING", "2 -> 4 replicas"],
    ]
    assert shown["groups"] == [
        {"group": "headgroup", "min_replicas": 1, "max_replicas": 1, "phases": {"Running": 1}},
        {
            "group": "l4",
            "min_replicas": 0,
            "max_replicas": 8,
            "phases": {"Running": 1, "Pending": 1},
        },
        {"group": "a100", "min_replicas": 1, "max_replicas": 3, "phases": {"Running": 1}},
    ]
    # What it asked: the render-cluster RayServices by label, then the active cluster's pods.
    (listed,) = kube.received("GET", RAYSERVICES + "$")
    assert listed.query["labelSelector"] == "app.kubernetes.io/name=render-cluster"
    (pods,) = kube.received("GET", PODS)
    assert pods.query["labelSelector"] == f"ray.io/cluster={ACTIVE}"
    assert {r.headers["authorization"] for r in kube.requests} == {f"Bearer {TOKEN}"}
    assert not kube.received("POST", ".")


def test_status_by_name_and_namespace_reads_that_rayservice(kube, tmp_path):
    other = kube.kubeconfig(tmp_path / "other", namespace="elsewhere")
    args = ["status", "-n", NAMESPACE, "--name", "rc-render-cluster", "--json"]
    result = runner.invoke(app, args, env={"KUBECONFIG": str(other)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["active_cluster"] == ACTIVE
    assert [r.path for r in kube.received("GET", RAYSERVICES)] == [
        "/apis/ray.io/v1/namespaces/render/rayservices/rc-render-cluster"
    ]


def test_status_table_shows_the_same(kube):
    result = runner.invoke(app, ["status"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for shown in (ACTIVE, "NonZeroServeEndpoints", "render-cluster/model-sdxl", "Pending 1"):
        assert shown in result.stdout


def test_status_before_kuberay_made_a_cluster(kube, rayservice):
    rayservice["status"] = {"serviceStatus": "", "conditions": []}
    kube.add(rayservice)
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["active_cluster"] is None
    assert [g["phases"] for g in shown["groups"]] == [{}, {}, {}]
    assert not kube.received("GET", PODS)


# ---------------------------------------------------------------- submit-campaign


def test_submit_campaign_json_creates_a_valid_rayjob(kube, manifest):
    result = runner.invoke(app, ["submit-campaign", str(manifest), "--json"])
    assert result.exit_code == 0, result.output
    assert_clean(result)
    shown = json.loads(result.stdout)
    assert shown["namespace"] == NAMESPACE and shown["ray_cluster"] == ACTIVE
    assert shown["rayjob"].startswith("campaign-spring-")
    (created,) = kube.received("POST", RAYJOBS)
    # The client sends no Content-Type here; the API server then reads JSON, as it is.
    assert created.headers.get("content-type", "application/json").startswith("application/json")
    job = created.body
    validate(job)  # CRD schema (strict), KubeRay's own checks, the submitter pod template
    assert job["metadata"]["name"] == shown["rayjob"]
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": ACTIVE}
    # The campaign runs through the deployed API (never an embedded cluster), with a key.
    api = "http://rc-render-cluster-serve-svc.render.svc:8000"
    assert shown["api"] == api
    assert job["spec"]["entrypoint"].endswith(f" --url {api}")
    assert 'RENDERCLUSTER_API_KEY="${RENDER_CLUSTER_API_KEYS%%,*}"' in job["spec"]["entrypoint"]
    (submitter,) = job["spec"]["submitterPodTemplate"]["spec"]["containers"]
    assert submitter["image"] == IMAGE  # the head's image
    assert ("rayjobs", NAMESPACE, shown["rayjob"]) in kube.objects


def test_submit_campaign_without_an_active_cluster_is_one_error(kube, rayservice, manifest):
    rayservice["status"] = {"serviceStatus": ""}
    kube.add(rayservice)
    result = runner.invoke(app, ["submit-campaign", str(manifest), "--json"])
    assert result.exit_code == ExitCode.USAGE
    assert_clean(result)
    assert "no active Ray cluster yet" in json.loads(result.stdout)["error"]["message"]
    assert not kube.received("POST", RAYJOBS)


# ---------------------------------------------------------------- API errors

FORBIDDEN = (
    'rayjobs.ray.io is forbidden: User "system:serviceaccount:render:ci" cannot create '
    'resource "rayjobs" in API group "ray.io" in the namespace "render"'
)


@pytest.mark.parametrize(
    ("command", "failure", "code", "fragment"),
    [
        pytest.param(
            ["status", "--name", "nope"],
            None,
            ExitCode.NOT_FOUND,
            "no RayService 'nope' in namespace 'render'",
            id="missing-rayservice-404",
        ),
        pytest.param(
            ["status", "-n", "empty"],
            None,
            ExitCode.NOT_FOUND,
            "no render-cluster RayService in namespace 'empty'",
            id="no-rayservice-in-namespace",
        ),
        pytest.param(
            ["submit-campaign", "MANIFEST"],
            "no-crds",
            ExitCode.NOT_FOUND,
            "install the KubeRay operator",
            id="no-kuberay-404",
        ),
        pytest.param(
            ["status"],
            ("GET", RAYSERVICES, 403, "rayservices.ray.io is forbidden"),
            ExitCode.UNAUTHORIZED,
            "the cluster refused the request (403): rayservices.ray.io is forbidden",
            id="status-403",
        ),
        pytest.param(
            ["submit-campaign", "MANIFEST"],
            ("POST", RAYJOBS, 403, FORBIDDEN),
            ExitCode.UNAUTHORIZED,
            f"the cluster refused the request (403): {FORBIDDEN} (RBAC: k8s/rbac-cli.yaml)",
            id="submit-403",
        ),
        pytest.param(
            ["submit-campaign", "MANIFEST"],
            "bad-token",
            ExitCode.UNAUTHORIZED,
            "the cluster refused the request (401): Unauthorized",
            id="submit-401",
        ),
        pytest.param(
            ["submit-campaign", "MANIFEST"],
            ("POST", RAYJOBS, 422, 'RayJob.ray.io "x" is invalid: spec.entrypoint: Required'),
            ExitCode.REJECTED,
            "Kubernetes API error 422: RayJob.ray.io",
            id="submit-422",
        ),
        pytest.param(
            ["status"],
            ("GET", PODS, 500, "etcdserver: request timed out"),
            ExitCode.SERVER_ERROR,
            "Kubernetes API error 500: etcdserver: request timed out",
            id="pods-500",
        ),
        pytest.param(
            ["status"],
            ("GET", RAYSERVICES, 503, "the server is currently unable to handle the request"),
            ExitCode.OVERLOADED,
            "Kubernetes API error 503",
            id="status-503",
        ),
    ],
)
def test_api_errors_are_json_with_their_exit_code(
    command, failure, code, fragment, kube, manifest, tmp_path
):
    if failure == "no-crds":
        kube.ray_crds_installed = False
    elif failure == "bad-token":
        kube.kubeconfig(tmp_path / "kubeconfig", namespace=NAMESPACE, token="expired")
    elif failure:
        kube.fail(*failure)
    args = [str(manifest) if arg == "MANIFEST" else arg for arg in command]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    assert_clean(result)
    error = json.loads(result.stdout)["error"]
    assert error["exit_code"] == code and error["kind"] == code.name.lower()
    assert fragment in error["message"], error["message"]
    (line,) = result.stderr.strip().splitlines()
    assert line == f"error: {error['message']}"
    if not (isinstance(failure, tuple) and failure[0] == "POST"):
        assert not kube.received("POST", RAYJOBS)


# ---------------------------------------------------------------- kubeconfig problems


@pytest.mark.parametrize("command", [["status"], ["submit-campaign", "MANIFEST"]])
@pytest.mark.parametrize(
    ("kubeconfig", "fragment"),
    [
        pytest.param("DIRECTORY", "cannot read the kubeconfig", id="a-directory"),
        pytest.param("clusters: 5\n", "is not a usable kubeconfig", id="wrong-shape"),
    ],
)
def test_an_unusable_kubeconfig_is_a_usage_error_in_json(
    command, kubeconfig, fragment, kube, manifest, tmp_path, monkeypatch
):
    path = tmp_path / "config"
    if kubeconfig == "DIRECTORY":
        path.mkdir()
    else:
        path.write_text(kubeconfig)
    monkeypatch.setenv("KUBECONFIG", str(path))
    args = [str(manifest) if arg == "MANIFEST" else arg for arg in command]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert_clean(result)
    assert fragment in json.loads(result.stdout)["error"]["message"]
    assert not kube.requests


def test_an_answer_the_client_cannot_read_is_one_json_error(kube):
    broken = pod(f"{ACTIVE}-broken", NAMESPACE, ACTIVE, "l4", "Running", IMAGE)
    broken["spec"] = {"containers": "not a list"}
    kube.add(broken)
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == ExitCode.ERROR, result.output
    assert_clean(result)
    assert json.loads(result.stdout)["error"]["message"].startswith("unexpected ")
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: unexpected ")
