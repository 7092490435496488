"""Jobs outlive the whole cluster: `rendercluster up` stopped with Ctrl-C and started again.

The cluster runs as its own `rendercluster up` process on a config of its own (a
short lease, a queue of one), so that stopping it is a real Ctrl-C. Before the
stop: a hires job is rendering, a second one queues, a third is refused with 429,
and a pipeline run waits at its approval gate. After the restart the first two
finish without being submitted again (the first with the bytes of an undisturbed
run) and the pipeline run is approved and finishes.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import yaml
from PIL import Image

from tests.integration.conftest import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CLI = [str(Path(sys.executable).parent / "rendercluster")]
JOB = {
    "prompt": "a lighthouse at night",
    "model": "quality",
    "width": 1024,
    "height": 512,
    "steps": 3,
    "seed": 4242,
    "tile_size": 128,
    "mode": "hires",
    "wait": False,
}


def _config(tmp_path: Path) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    config["models"] = {"quality": config["models"]["quality"], "fast": config["models"]["fast"]}
    config["models"]["quality"]["autoscaling"].update(min_replicas=1, max_replicas=1)
    config["models"]["fast"]["autoscaling"].update(min_replicas=1, max_replicas=1)
    config["storage"] = {"kind": "local", "path": str(tmp_path / "store")}
    config["model_cache_dir"] = str(tmp_path / "models")
    config["jobs"] = {"lease_ttl_s": 3, "max_running_per_model": 1, "max_queued_per_model": 1}
    standard = config["pipelines"]["standard"]
    config["pipelines"] = {"gated": {"stages": standard["stages"][:3]}}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _up(config: Path, port: int, log: Path) -> subprocess.Popen:
    command = [*CLI, "up", "--config", str(config), "--gpus", "2", "--port", str(port)]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    def probe() -> int:
        assert process.poll() is None, f"rendercluster up exited:\n{log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{url}/readyz", timeout=5).status_code
        except httpx.HTTPError:
            return 0

    wait_until(probe, lambda code: code == 200, timeout_s=300, interval_s=1, what="/readyz")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def _job(http: httpx.Client, job_id: str) -> dict:
    return http.get(f"/v1/jobs/{job_id}").json()


def _pixels(http: httpx.Client, job_id: str) -> np.ndarray:
    view = http.get(f"/v1/renders/{job_id}").json()
    with Image.open(io.BytesIO(http.get(view["result"]["url"]).content)) as image:
        return np.asarray(image.convert("RGB"))


def _before_the_stop(http: httpx.Client) -> tuple[str, str, str]:
    first = http.post("/v1/renders", json=JOB)
    assert first.status_code == 202, first.text
    wait_until(
        lambda: _job(http, first.json()["id"]),
        lambda job: job["status"] == "running",
        timeout_s=60,
        what="the first job to start",
    )
    second = http.post("/v1/renders", json={**JOB, "seed": 4243})
    assert second.status_code == 202, second.text
    assert _job(http, second.json()["id"])["status"] == "queued"
    third = http.post("/v1/renders", json={**JOB, "seed": 4244})
    assert third.status_code == 429, third.text
    assert int(third.headers["Retry-After"]) > 0
    assert "max_queued_per_model" in third.json()["error"]["message"]
    run = http.post(
        "/v1/pipelines/gated/runs", json={"prompt": "a poster", "seed": 3, "wait": True}
    )
    assert run.status_code == 200 and run.json()["status"] == "awaiting_approval", run.text
    first_id = first.json()["id"]
    wait_until(
        lambda: _job(http, first_id),
        lambda job: job["progress"]["done"] >= 2,
        timeout_s=300,
        what=f"job {first_id} to finish 2 tiles",
    )
    return first_id, second.json()["id"], run.json()["id"]


def test_jobs_and_a_waiting_run_survive_a_stop_and_start_of_the_cluster(tmp_path):
    config, log = _config(tmp_path), tmp_path / "up.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _up(config, port, log)
    try:
        _healthy(url, process, log)
        with httpx.Client(base_url=url, timeout=600) as http:
            first, second, run = _before_the_stop(http)
        _stop(process)
        process = _up(config, port, log)
        _healthy(url, process, log)
        with httpx.Client(base_url=url, timeout=600) as http:
            for job_id in (first, second):
                job = wait_until(
                    lambda job_id=job_id: _job(http, job_id),
                    lambda job: job["status"] in ("done", "failed", "cancelled"),
                    timeout_s=400,
                    interval_s=0.5,
                    what=f"job {job_id} to finish after the restart",
                )
                assert job["status"] == "done", job
            assert _job(http, first)["attempts"] == 2
            assert http.get(f"/v1/renders/{first}").json()["result"]["metrics"]["tiles_reused"] >= 2
            approved = http.post(f"/v1/renders/{run}/approve", json={"wait": True})
            assert approved.status_code == 200 and approved.json()["status"] == "done"
            undisturbed = http.post("/v1/renders", json={**JOB, "wait": True})
            assert undisturbed.status_code == 200, undisturbed.text
            assert np.array_equal(_pixels(http, first), _pixels(http, undisturbed.json()["id"]))
    finally:
        if process.poll() is None:
            _stop(process)


def test_up_refuses_a_config_whose_minimum_replicas_need_more_gpus(tmp_path):
    result = subprocess.run(
        [*CLI, "up", "--config", "configs/local.yaml", "--gpus", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2  # usage: the config cannot be used
    assert "need 3 GPUs" in result.stderr and "1 short" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_names_a_local_model_source_missing_here_before_starting_anything(tmp_path):
    config = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    config["models"]["scenes"]["source"] = "models/not-trained-yet"
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [*CLI, "up", "--config", str(path), "--gpus", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2, result.stderr  # usage: the config cannot be used here
    assert "models.scenes.source: 'models/not-trained-yet' is not a file or directory here" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr and "Started Serve" not in result.stderr
