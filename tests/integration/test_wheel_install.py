"""A wheel built from the repo, installed in a fresh venv outside the checkout, runs
`rendercluster init`, `up` and `k8s render` (the config and chart are package data).

The fresh venv gets the wheel only; its dependencies come from the project's venv by
a plain path entry (a `.pth` line, so the project's editable install is not seen).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `rendercluster` command of a fresh venv holding only the built wheel."""
    root = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(root / "dist"), str(ROOT)], check=True, timeout=300)
    (wheel,) = (root / "dist").glob("render_cluster-*.whl")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, timeout=300)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "venv" / "bin" / "rendercluster"


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_init_and_k8s_render_work_from_the_wheel_alone(installed, tmp_path):
    made = _run([str(installed), "init", "--json"], tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["models"] == ["fast", "quality", "scenes", "upscaler"]
    assert (tmp_path / "models" / "scenes" / "model_index.json").exists()  # beside the config
    python = str(installed.parent / "python")
    where = _run([python, "-c", "import cli; print(cli.__file__)"], tmp_path)
    assert not where.stdout.startswith(str(ROOT)), where.stdout  # not the checkout's code
    chart = _run([python, "-c", "from cli.assets import CHART_DIR; print(CHART_DIR)"], tmp_path)
    values = Path(chart.stdout.strip(), "ci", "dev-cpu-values.yaml")  # the packaged chart's
    rendered = _run([str(installed), "k8s", "render", "--values", str(values)], tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: RayService" in rendered.stdout


@pytest.mark.timeout(600)
def test_up_serves_from_the_wheel_with_the_starter_config(installed, tmp_path):
    assert _run([str(installed), "init"], tmp_path).returncode == 0
    port = _free_port()
    up = subprocess.Popen(
        [str(installed), "up", "-c", "rendercluster.yaml", "--port", str(port), "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        line = wait_until(up.stdout.readline, bool, timeout_s=420, what="`up` to say it is up")
        url = json.loads(line)["url"]
        health = httpx.get(f"{url}/healthz", timeout=10)
        assert health.status_code == 200
        models = httpx.get(f"{url}/v1/models", timeout=30).json()
        names = {model["name"] for model in models["models"]}
        assert names == {"fast", "quality", "scenes", "upscaler"}
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
