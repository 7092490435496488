"""`rendercluster k8s`: rendering, the RayJob it would submit, and life without a cluster."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k8s_support import CHART, DATA, kuberay_problems, render, validate
from typer.testing import CliRunner

from cli.exit_codes import ExitCode
from cli.k8s import (
    DEFAULT_ENTRYPOINT,
    MANIFEST_ENV,
    K8sError,
    api_keys_env,
    app,
    rayjob_body,
    rayjob_name,
    serve_url,
    summarize,
)

runner = CliRunner()
MANIFEST = b"name: spring\nitems:\n  - prompt: a lighthouse at dawn\n    sizes: ['1:1']\n"
API_URL = "http://rc-render-cluster-serve-svc.render.svc:8000"


def body(**overrides) -> dict:
    arguments = {
        "job_name": "campaign-spring-0a1b2c",
        "cluster_name": "rc-render-cluster-x7k2p",
        "image": "registry.example.com/render-cluster:0.1.0",
        "manifest_name": "spring.yaml",
        "manifest": MANIFEST,
        "api_url": API_URL,
    } | overrides
    return rayjob_body(**arguments)


# ---------------------------------------------------------------- without a cluster


@pytest.fixture
def no_incluster(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kubeconfig(tmp_path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def assert_one_line_error(result, code: ExitCode, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("command", [["status"], ["submit-campaign", "MANIFEST"]])
def test_no_kubeconfig_is_one_line(command, tmp_path, no_incluster):
    manifest = tmp_path / "spring.yaml"
    manifest.write_bytes(MANIFEST)
    args = [str(manifest) if arg == "MANIFEST" else arg for arg in command]
    env = {"KUBECONFIG": str(tmp_path / "missing")}
    result = runner.invoke(app, args, env=env)
    assert_one_line_error(result, ExitCode.USAGE, "no Kubernetes cluster configured", "KUBECONFIG")


@pytest.mark.parametrize("command", [["status", "-n", "render"], ["submit-campaign", "MANIFEST"]])
def test_unreachable_api_server_is_one_line(command, tmp_path, no_incluster):
    manifest = tmp_path / "spring.yaml"
    manifest.write_bytes(MANIFEST)
    args = [str(manifest) if arg == "MANIFEST" else arg for arg in command]
    server = f"https://127.0.0.1:{closed_port()}"
    env = {"KUBECONFIG": str(kubeconfig(tmp_path, server))}
    result = runner.invoke(app, args, env=env)
    assert_one_line_error(
        result, ExitCode.UNREACHABLE, f"cannot reach the Kubernetes API server at {server}"
    )


def test_missing_manifest_is_one_line(tmp_path, no_incluster):
    result = runner.invoke(app, ["submit-campaign", str(tmp_path / "nope.yaml")])
    assert_one_line_error(result, ExitCode.NOT_FOUND, "cannot read", "nope.yaml")


# ---------------------------------------------------------------- render


def test_render_prints_every_manifest():
    result = runner.invoke(app, ["render", "--values", str(DATA / "prod-values.yaml")])
    assert result.exit_code == 0, result.output
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(docs) == 11  # the dashboard ConfigMap and the helm test Pod among them
    for doc in docs:
        validate(doc)


def test_render_writes_files(tmp_path):
    values = CHART / "ci" / "dev-cpu-values.yaml"
    result = runner.invoke(app, ["render", "-f", str(values), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    templates = tmp_path / "render-cluster" / "templates"
    written = sorted(str(p.relative_to(templates)) for p in templates.rglob("*.yaml"))
    assert written == [
        "poddisruptionbudget.yaml",
        "rayservice.yaml",
        "serviceaccount.yaml",
        "tests/render.yaml",
    ]


def test_render_lists_every_values_problem(tmp_path):
    values = yaml.safe_load((CHART / "ci" / "dev-cpu-values.yaml").read_text())
    values["cluster"]["styles"]["poster"] = "nope"
    values["workerGroups"][0]["minReplicas"] = 5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    result = runner.invoke(app, ["render", "-f", str(path)])
    assert result.exit_code == ExitCode.REJECTED
    assert "Traceback" not in result.output
    assert "'poster' -> 'nope'" in result.stderr
    assert "maxReplicas (2) must be >= minReplicas (5)" in result.stderr


def test_render_of_a_missing_values_file_is_one_line(tmp_path):
    result = runner.invoke(app, ["render", "-f", str(tmp_path / "none.yaml")])
    assert_one_line_error(result, ExitCode.NOT_FOUND, "cannot read")


# ---------------------------------------------------------------- the RayJob


def test_rayjob_body_validates_against_the_crd():
    job = body()
    validate(job)  # CRD schema (strict), KubeRay's own checks, the submitter pod template
    spec = job["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": "rc-render-cluster-x7k2p"}
    assert spec["shutdownAfterJobFinishes"] is False
    (submitter,) = spec["submitterPodTemplate"]["spec"]["containers"]
    assert {"requests", "limits"} <= set(submitter["resources"])


def test_the_entrypoint_gets_the_manifest_file(tmp_path):
    """Run the job's entrypoint in a local shell, as Ray runs it on the head."""
    job_name = f"campaign-test-{os.getpid()}"
    job = body(job_name=job_name, entrypoint="cat {manifest} > " + str(tmp_path / "seen"))
    env_vars = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    environment = os.environ | env_vars | {"PATH": path}  # `python` as on the Ray head
    try:
        subprocess.run(job["spec"]["entrypoint"], shell=True, check=True, env=environment)
    finally:
        Path(f"/tmp/{job_name}.yaml").unlink(missing_ok=True)
    assert (tmp_path / "seen").read_bytes() == MANIFEST


def test_default_entrypoint_runs_the_campaign_runner_on_the_deployed_api():
    entrypoint = body()["spec"]["entrypoint"]
    command = "rendercluster campaign run /tmp/campaign-spring-0a1b2c.yaml --url " + API_URL
    assert DEFAULT_ENTRYPOINT.endswith("--url {api}")
    assert entrypoint.endswith(f"&& {command}")
    assert MANIFEST_ENV in entrypoint


def test_the_entrypoint_calls_the_api_with_the_first_key_of_the_heads_variable(tmp_path):
    """The default entrypoint in a local shell, a stand-in `rendercluster` on PATH: it
    gets the manifest, the Serve Service's URL and the first API key of the head's
    variable, and the key itself never appears in the RayJob."""
    job_name = f"campaign-key-{os.getpid()}"
    job = body(job_name=job_name, keys_env="RENDER_CLUSTER_API_KEYS")
    assert "key-one" not in json.dumps(job)
    seen = tmp_path / "seen.json"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "rendercluster"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "manifest = open(sys.argv[3]).read()\n"
        f"json.dump([sys.argv[1:], os.environ.get('RENDERCLUSTER_API_KEY'), manifest], "
        f"open({str(seen)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    env_vars = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    path = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    head_env = {"RENDER_CLUSTER_API_KEYS": "key-one,key-two", "PATH": path}
    environment = {k: v for k, v in os.environ.items() if k != "RENDERCLUSTER_API_KEY"}
    try:
        subprocess.run(
            job["spec"]["entrypoint"], shell=True, check=True, env=environment | env_vars | head_env
        )
    finally:
        Path(f"/tmp/{job_name}.yaml").unlink(missing_ok=True)
    arguments, key, manifest = json.loads(seen.read_text())
    assert arguments == ["campaign", "run", f"/tmp/{job_name}.yaml", "--url", API_URL]
    assert key == "key-one"
    assert manifest == MANIFEST.decode()


def test_the_api_and_its_keys_variable_come_from_the_rayservice():
    values = yaml.safe_load((DATA / "prod-values.yaml").read_text())
    prod = yaml.safe_load(render_rayservice(values))
    prod["metadata"]["namespace"] = "render"
    assert serve_url(prod) == API_URL
    assert api_keys_env(prod) == "RENDER_CLUSTER_API_KEYS"
    plain = yaml.safe_load(render_rayservice(None))
    del plain["spec"]["serveService"]
    assert serve_url(plain) == "http://rc-render-cluster-serve-svc.default.svc:8000"
    assert api_keys_env(plain) is None  # the default install has no API keys


def render_rayservice(values: dict | None) -> str:
    return render(values)["render-cluster/templates/rayservice.yaml"]


def test_an_oversized_manifest_is_refused():
    noise = os.urandom(200 * 1024)
    with pytest.raises(K8sError, match="too large"):
        body(manifest=noise)


@pytest.mark.parametrize(
    "manifest",
    ["spring.yaml", "Spring Launch 2025 -- Billboards & Posters (final) v3.csv", "___.jsonl"],
)
def test_rayjob_names_are_dns_labels_kuberay_accepts(manifest):
    name = rayjob_name(Path(manifest), "0a1b2c")
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
    assert len(name) <= 47 and name.endswith("-0a1b2c")
    assert not kuberay_problems(body(job_name=name))


# ---------------------------------------------------------------- status


def test_summarize_reads_conditions_applications_and_pods():
    rayservice = {
        "metadata": {"name": "rc-render-cluster", "namespace": "render"},
        "spec": {
            "rayClusterConfig": {
                "workerGroupSpecs": [
                    {"groupName": "l4", "minReplicas": 0, "maxReplicas": 8},
                    {"groupName": "a100", "minReplicas": 1, "maxReplicas": 3},
                ]
            }
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"},
                {"type": "UpgradeInProgress", "status": "False", "reason": "NoPendingCluster"},
            ],
            "activeServiceStatus": {
                "rayClusterName": "rc-render-cluster-x7k2p",
                "applicationStatuses": {
                    "render-cluster": {
                        "status": "RUNNING",
                        "serveDeploymentStatuses": {
                            "ingress": {"status": "HEALTHY"},
                            "model-sdxl": {"status": "UPSCALING", "message": "2 -> 4"},
                        },
                    }
                },
            },
        },
    }
    pods = [
        {"metadata": {"labels": {"ray.io/group": "headgroup"}}, "status": {"phase": "Running"}},
        {"metadata": {"labels": {"ray.io/group": "l4"}}, "status": {"phase": "Running"}},
        {"metadata": {"labels": {"ray.io/group": "l4"}}, "status": {"phase": "Pending"}},
        {"metadata": {"labels": {"ray.io/group": "l4"}}, "status": {"phase": "Running"}},
    ]
    summary = summarize(rayservice, pods)
    assert summary.active_cluster == "rc-render-cluster-x7k2p"
    assert summary.pending_cluster is None
    assert summary.conditions[0] == ("Ready", "True", "NonZeroServeEndpoints", "")
    assert summary.applications == [
        ("render-cluster", "RUNNING", ""),
        ("render-cluster/ingress", "HEALTHY", ""),
        ("render-cluster/model-sdxl", "UPSCALING", "2 -> 4"),
    ]
    groups = {g.group: (g.min_replicas, g.max_replicas, g.phases) for g in summary.groups}
    assert groups == {
        "headgroup": (1, 1, {"Running": 1}),
        "l4": (0, 8, {"Running": 2, "Pending": 1}),
        "a100": (1, 3, {}),
    }


def test_render_as_json_is_the_manifests_and_a_bad_file_is_json_too(tmp_path):
    result = runner.invoke(app, ["render", "--values", str(DATA / "prod-values.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    kinds = {doc["kind"] for doc in json.loads(result.stdout)["manifests"]}
    assert {"RayService", "ServiceMonitor", "ConfigMap"} <= kinds
    missing = runner.invoke(app, ["render", "-f", str(tmp_path / "none.yaml"), "--json"])
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert json.loads(missing.stdout)["error"]["kind"] == "not_found"
