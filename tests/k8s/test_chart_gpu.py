"""What a GPU cluster adds to the chart: pod extras per group, the spool volume, the PDB
default, the `helm test` pod (its script run against a local stub API) and the image."""

from __future__ import annotations

import copy
import json
import os
import re
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_python
import pytest
from k8s_support import CHART, ROOT, objects, one, render, validate, values_for

from actors.render_calls import SPOOL_DIR_ENV, default_spool_dir
from serve.local_cluster import SERVE_TRANSPORT


def cluster_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "RayService")["spec"]["rayClusterConfig"]


def pod_specs(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Group name ('head' or a worker group's) -> its pod spec."""
    cluster = cluster_of(objs)
    specs = {"head": cluster["headGroupSpec"]["template"]["spec"]}
    for group in cluster["workerGroupSpecs"]:
        specs[group["groupName"]] = group["template"]["spec"]
    return specs


def with_changes(case: str, **changes: Any) -> dict[str, Any]:
    values = copy.deepcopy(values_for(case) or {})
    values.update(changes)
    return values


# ---------------------------------------------------------------- pod extras


def test_a_gpu_group_gets_its_runtime_priority_spread_env_and_volumes(rendered_objects):
    gpu = values_for("gpu")["workerGroups"][0]
    spec = pod_specs(rendered_objects["gpu"])["l4"]
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["priorityClassName"] == "render-gpu"
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert spec["topologySpreadConstraints"] == gpu["topologySpreadConstraints"]
    (container,) = spec["containers"]
    names = [env["name"] for env in container["env"]]
    assert names[-2:] == ["SSL_CERT_FILE", "PYTORCH_CUDA_ALLOC_CONF"]  # after the chart's own
    assert "HF_HOME" in names and SPOOL_DIR_ENV in names
    assert container["envFrom"] == [{"configMapRef": {"name": "render-proxy"}}]
    assert [v["name"] for v in spec["volumes"]] == ["shm", "model-cache", "spool", "corp-ca"]
    assert spec["volumes"][-1] == {"name": "corp-ca", "configMap": {"name": "corp-ca"}}
    assert container["volumeMounts"][-1] == {
        "name": "corp-ca",
        "mountPath": "/etc/corp-ca",
        "readOnly": True,
    }
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_head_gets_its_own_extras_and_no_gpu_runtime(rendered_objects):
    spec = pod_specs(rendered_objects["gpu"])["head"]
    assert spec["priorityClassName"] == "render-gpu"
    assert "runtimeClassName" not in spec and "topologySpreadConstraints" not in spec
    (container,) = spec["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "render-proxy"}}]
    assert {"name": "SSL_CERT_FILE", "value": "/etc/corp-ca/ca.crt"} in container["env"]
    assert "PYTORCH_CUDA_ALLOC_CONF" not in {env["name"] for env in container["env"]}


def test_without_extras_the_pods_carry_none_of_the_new_fields(rendered_objects):
    for spec in pod_specs(rendered_objects["default"]).values():
        assert not {"runtimeClassName", "priorityClassName", "topologySpreadConstraints"} & set(
            spec
        )
        (container,) = spec["containers"]
        assert "envFrom" not in container


def test_every_ray_pod_calls_replicas_over_grpc_as_the_embedded_cluster_does(rendered_objects):
    """Serve's transport must be the same in every process: the chart's env carries it."""
    for case in ("default", "gpu"):
        for group, spec in pod_specs(rendered_objects[case]).items():
            (container,) = spec["containers"]
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert {name: env.get(name) for name in SERVE_TRANSPORT} == SERVE_TRANSPORT, group


# ---------------------------------------------------------------- spool


def spool_of(spec: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The spool volume, its mount path and the container's RENDER_CLUSTER_SPOOL_DIR."""
    (volume,) = [v for v in spec["volumes"] if v["name"] == "spool"]
    (container,) = spec["containers"]
    (mount,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "spool"]
    (env,) = [e["value"] for e in container["env"] if e["name"] == SPOOL_DIR_ENV]
    return volume, mount, env


def test_every_ray_pod_mounts_the_spool_where_the_code_looks(rendered_objects, monkeypatch):
    specs = pod_specs(rendered_objects["default"])
    for spec in specs.values():
        volume, mount, env = spool_of(spec)
        assert volume == {"name": "spool", "emptyDir": {"sizeLimit": "50Gi"}}
        assert mount == env == "/home/ray/spool"
    monkeypatch.setenv(SPOOL_DIR_ENV, env)
    assert default_spool_dir() == Path("/home/ray/spool")
    monkeypatch.delenv(SPOOL_DIR_ENV)
    assert default_spool_dir().name == "render-cluster-spool"  # the local cluster's default


def test_a_pvc_spool_is_a_claim_per_pod(rendered_objects):
    for spec in pod_specs(rendered_objects["gpu"]).values():
        volume, _, _ = spool_of(spec)
        claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
        assert set(volume) == {"name", "ephemeral"}
        assert claim == {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "premium-rwo",
            "resources": {"requests": {"storage": "200Gi"}},
        }


def test_a_shared_claim_and_another_path():
    spool = {"type": "existingClaim", "claimName": "render-spool", "mountPath": "/scratch"}
    objs = objects(render(with_changes("ci", spool=spool)))
    for obj in objs:
        validate(obj)
    for spec in pod_specs(objs).values():
        volume, mount, env = spool_of(spec)
        assert volume == {"name": "spool", "persistentVolumeClaim": {"claimName": "render-spool"}}
        assert mount == env == "/scratch"


# ---------------------------------------------------------------- refused values

SCRATCH = {"name": "scratch", "emptyDir": {}}
SCRATCH_ON_SPOOL = {"name": "scratch", "mountPath": "/home/ray/spool"}


def refused(values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmError) as caught:
        render(values)
    return str(caught.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"spool": {"type": "existingClaim"}},
            "spool: claimName is required when type is 'existingClaim'",
        ),
        (
            {"head": {"volumeMounts": [{"name": "certs", "mountPath": "/etc/certs"}]}},
            'head.volumeMounts: "certs" names no volume (volumes: shm, model-cache, spool)',
        ),
        (
            {"head": {"volumes": [{"name": "spool", "emptyDir": {}}]}},
            'head.volumes: the name "spool" is taken',
        ),
        (
            {"head": {"volumes": [SCRATCH], "volumeMounts": [SCRATCH_ON_SPOOL]}},
            "head.volumeMounts: /home/ray/spool is where the chart mounts its own volume",
        ),
        (
            {"modelCache": {"volume": {"hostPath": {"path": "/mnt/models"}}}},
            "modelCache.volume: one volume source, got 2 (emptyDir, hostPath)",
        ),
        ({"spool": {"type": "nfs"}}, "/spool/type"),
        ({"head": {"env": [{"value": "1"}]}}, "missing property 'name'"),
        ({"helmTest": {"width": 8}}, "/helmTest/width"),
    ],
)
def test_extras_that_cannot_work_are_refused(changes, expected):
    values = copy.deepcopy(values_for("ci"))
    for key, change in changes.items():
        values[key] = {**values.get(key, {}), **change}
    assert expected in refused(values)


def test_worker_group_mounts_are_checked_per_group():
    values = copy.deepcopy(values_for("gpu"))
    values["workerGroups"][0]["volumes"] = []
    assert 'workerGroups[0] (l4).volumeMounts: "corp-ca" names no volume' in refused(values)


# ---------------------------------------------------------------- disruption budgets


def test_default_budgets_let_a_drain_evict_the_head_and_a_worker(rendered_objects):
    budgets = [o for o in rendered_objects["default"] if o["kind"] == "PodDisruptionBudget"]
    assert [b["spec"] for b in budgets] == [
        {"maxUnavailable": 1, "selector": b["spec"]["selector"]} for b in budgets
    ]
    components = [
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for b in budgets
    ]
    assert components == ["head", "worker-gpu"]


# ---------------------------------------------------------------- helm test


def helm_test_pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "Pod")


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    return {env["name"]: env.get("value", env.get("valueFrom")) for env in container["env"]}


@pytest.mark.parametrize("case", ["default", "ci", "gpu", "prod"])
def test_the_test_pod_is_a_helm_test_hook_that_runs_the_script(case, rendered_objects):
    objs = rendered_objects[case]
    pod = helm_test_pod(objs)
    validate(pod)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    script = (CHART / "files" / "smoke-render.py").read_text()
    assert container["command"] == ["python", "-c", script]
    rayservice = one(objs, "RayService")
    service = rayservice["spec"]["serveService"]["metadata"]["name"]
    env = env_of(pod)
    assert env["RENDER_URL"] == f"http://{service}.render.svc:8000"
    assert json.loads(env["RENDER_REQUEST"]) == {
        "prompt": "helm test: a red circle on a white background",
        "width": 64,
        "height": 64,
        "steps": 2,
        "seed": 0,
    }
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert container["image"] == head["containers"][0]["image"]


def test_the_test_pod_uses_the_apis_key_or_the_one_given(rendered_objects):
    prod = env_of(helm_test_pod(rendered_objects["prod"]))
    secret = one(rendered_objects["prod"], "Secret")["metadata"]["name"]
    assert prod["RENDER_API_KEY"] == {"secretKeyRef": {"name": secret, "key": "API_KEYS"}}
    assert "RENDER_API_KEY" not in env_of(helm_test_pod(rendered_objects["default"]))
    given = {"apiKeySecret": {"name": "render-test-key", "key": "token"}, "model": "sdxl"}
    pod = helm_test_pod(objects(render(with_changes("prod", helmTest=given))))
    env = env_of(pod)
    assert env["RENDER_API_KEY"] == {"secretKeyRef": {"name": "render-test-key", "key": "token"}}
    assert json.loads(env["RENDER_REQUEST"])["model"] == "sdxl"


def test_the_test_pod_can_be_left_out():
    objs = objects(render(with_changes("ci", helmTest={"enabled": False})))
    assert "Pod" not in {obj["kind"] for obj in objs}


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG of the given size."""
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class StubApi:
    """A stand-in render API on 127.0.0.1: answers from a list, records what it got."""

    def __init__(self, answers: list[tuple[int, str, bytes]]):
        self.answers = answers
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []


@pytest.fixture
def stub() -> Iterator[tuple[StubApi, str]]:
    api = StubApi([])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            api.received.append((self.command, self.path, dict(self.headers), body))
            if self.path == "/healthz":
                status, kind, data = 200, "application/json", b'{"status": "ok"}'
            else:
                status, kind, data = api.answers.pop(0)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_test_pod(pod: dict[str, Any], url: str, **env: str) -> subprocess.CompletedProcess:
    """The test pod's command in a local process, its env as rendered (URL and key local)."""
    (container,) = pod["spec"]["containers"]
    rendered = {k: v for k, v in env_of(pod).items() if isinstance(v, str)}
    environment = {"PATH": os.environ["PATH"]} | rendered | {"RENDER_URL": url} | env
    command = [sys.executable, *container["command"][1:]]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


def test_the_test_pod_passes_on_a_png_of_the_asked_size(rendered_objects, stub):
    api, url = stub
    api.answers = [(200, "image/png", png(64, 64))]
    result = run_test_pod(helm_test_pod(rendered_objects["prod"]), url, RENDER_API_KEY="k1,k2")
    assert result.returncode == 0, result.stderr
    assert "rendered a 64x64 PNG" in result.stdout
    (health, posted) = api.received
    assert health[:2] == ("GET", "/healthz")
    method, path, headers, body = posted
    assert (method, path) == ("POST", "/v1/renders")
    assert headers["Authorization"] == "Bearer k1"
    assert headers["Accept"] == "image/png"
    assert json.loads(body)["width"] == 64


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((200, "image/png", png(32, 64)), "the PNG is 32x64, not 64x64"),
        ((200, "application/json", b'{"id": "r1"}'), "answered 'application/json'"),
        ((200, "image/png", b"GIF89a..."), "not a PNG"),
        ((401, "application/json", b'{"error": "bad key"}'), "POST http://"),
        ((500, "application/json", b'{"error": "NaN pixels"}'), "NaN pixels"),
    ],
)
def test_the_test_pod_fails_with_the_reason(rendered_objects, stub, answer, reason):
    api, url = stub
    api.answers = [answer]
    result = run_test_pod(helm_test_pod(rendered_objects["default"]), url)
    assert result.returncode == 1
    assert "helm test failed:" in result.stderr and reason in result.stderr


def test_the_test_pod_waits_while_replicas_start(rendered_objects, stub):
    api, url = stub
    api.answers = [
        (503, "application/json", b'{"error": "starting"}'),
        (200, "image/png", png(64, 64)),
    ]
    result = run_test_pod(helm_test_pod(rendered_objects["default"]), url)
    assert result.returncode == 0, result.stderr
    assert "waiting for " in result.stdout and "HTTP 503" in result.stdout
    assert [r[1] for r in api.received] == ["/healthz", "/v1/renders", "/v1/renders"]


def test_the_test_pod_gives_up_at_its_deadline(rendered_objects):
    result = run_test_pod(
        helm_test_pod(rendered_objects["default"]), "http://127.0.0.1:9", RENDER_TIMEOUT_S="1"
    )
    assert result.returncode == 1
    assert "GET http://127.0.0.1:9/healthz: no answer" in result.stderr


# ---------------------------------------------------------------- the image


def dockerfile() -> str:
    """k8s/Dockerfile with line continuations joined, as Docker reads it."""
    return (ROOT / "k8s" / "Dockerfile").read_text().replace("\\\n", "")


def stage(text: str, name: str) -> str:
    (body,) = re.findall(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM )", text, re.M | re.S)
    return body


def test_the_gpu_variant_asks_for_cuda_and_the_vulkan_driver():
    text = dockerfile()
    gpu = stage(text, "base-gpu")
    (capabilities,) = re.findall(r"^ENV NVIDIA_DRIVER_CAPABILITIES=(\S+)$", gpu, re.M)
    assert {"compute", "utility", "graphics"} <= set(capabilities.split(","))
    assert "ENV TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://pypi.org/simple}" in gpu
    cpu = stage(text, "base-cpu")
    assert "NVIDIA_DRIVER_CAPABILITIES" not in cpu
    assert "ENV TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" in cpu
    assert '\nARG TORCH_INDEX_URL=""\n' in text and "\nARG VARIANT=gpu\n" in text
    (packages,) = re.findall(r"apt-get install -y --no-install-recommends (.*?) &&", text)
    assert "libvulkan1" in packages.split()  # ncnn dlopens libvulkan.so.1


@pytest.mark.parametrize(("variant", "passes"), [("cpu", True), ("gpu", False)])
def test_the_build_check_refuses_a_torch_that_does_not_suit_the_variant(variant, passes):
    """The image's last build step, run here (this venv's torch is the CPU build)."""
    (code,) = re.findall(r'python -c "(.*?)"\s+"\$\{VARIANT\}"', dockerfile(), re.S)
    result = subprocess.run(
        [sys.executable, "-c", code, variant], capture_output=True, text=True, timeout=120
    )
    assert (result.returncode == 0) is passes, result.stderr
    if not passes:
        assert "does not suit the gpu variant" in result.stderr
