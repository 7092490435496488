"""Durable jobs: resume waste after a killed router, kill-to-running time, status latency.

Starts the embedded cluster (configs/local.yaml, 4 logical GPUs, its own store)
and measures, in one run:

1. Resume waste. A hires job is submitted; once some tiles are done its router
   process is killed (SIGKILL). The supervisor starts a new attempt that takes
   finished tiles from the checkpoints. Printed: tiles checkpointed at the kill,
   tiles reused by the new attempt, and the waste ratio = tiles finished before
   the kill that were rendered again / tiles finished before the kill (0 is
   ideal: only tiles in flight at the kill are lost).
2. Kill to running again: seconds from the kill until the job's second attempt
   has a router that renders tiles (its phase is tiles).
3. Status latency while 8 hires jobs run: `GET /v1/jobs/{id}` and `GET /v1/jobs`
   p50 / p95 in ms, and as a ratio to `GET /healthz` measured in the same loop.
4. Job start, on an idle cluster, one job at a time: the 202 of a `"wait": false`
   hires POST (ms), and from the 202 until the job's router works on it (its
   progress phase is past "starting"), and until a router answers that it has the
   job (with warm routers, a router already running takes it).

Prints figures, asserts nothing.
Run: .venv/bin/python bench/bench_jobs.py [--polls 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.job_work import JOBS_NAMESPACE  # noqa: E402
from actors.router_pool import job_router  # noqa: E402
from core.config_file import load_config  # noqa: E402
from core.store import open_store  # noqa: E402
from serve.local_cluster import start_local_cluster  # noqa: E402

JOB = {
    "prompt": "a harbour at dawn",
    "model": "quality",
    "width": 1536,
    "height": 512,
    "steps": 3,
    "seed": 7,
    "tile_size": 128,
    "mode": "hires",
    "wait": False,
}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _job(http: httpx.Client, job_id: str) -> dict:
    return http.get(f"/v1/jobs/{job_id}").json()


def _wait(probe, timeout_s: float = 600, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError("gave up waiting")


def resume_figures(http: httpx.Client, store) -> None:
    job_id = http.post("/v1/renders", json=JOB).json()["id"]
    _wait(lambda: _job(http, job_id)["progress"]["done"] >= 12)
    router = job_router(job_id, JOBS_NAMESPACE)
    killed_pid = ray.get(router.where.remote())["pid"]
    os.kill(killed_pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    checkpointed = len(store.list_keys(f"job-pieces/{job_id}/")) - 1  # less the base image
    _wait(lambda: _rendering_again(job_id, killed_pid))
    back_s = time.perf_counter() - killed_at
    _wait(lambda: _job(http, job_id)["status"] in ("done", "failed"), interval_s=0.25)
    view = http.get(f"/v1/renders/{job_id}").json()
    metrics = view["result"]["metrics"]
    reused = int(metrics["tiles_reused"]) - 1  # less the base image
    tiles = int(metrics["tiles"])
    waste = (checkpointed - reused) / checkpointed if checkpointed else 0.0
    print(f"resume: {tiles} tiles, {checkpointed} checkpointed at the kill, {reused} reused")
    print(f"resume waste (finished tiles rendered again / finished before the kill): {waste:.3f}")
    print(f"kill to running again: {back_s:.2f} s (attempt {_job(http, job_id)['attempts']})")


def _rendering_again(job_id: str, killed_pid: int) -> bool:
    """Whether a router other than the killed one renders the job's tiles."""
    router = job_router(job_id, JOBS_NAMESPACE, timeout_s=1)
    if router is None or ray.get(router.where.remote())["pid"] == killed_pid:
        return False
    return ray.get(router.progress.remote())["phase"] in ("tiles", "text", "done")


def status_figures(http: httpx.Client, polls: int) -> None:
    ids = [http.post("/v1/renders", json={**JOB, "seed": 100 + i}).json()["id"] for i in range(8)]
    timings: dict[str, list[float]] = {"job": [], "list": [], "healthz": []}
    paths = {"job": f"/v1/jobs/{ids[0]}", "list": "/v1/jobs?limit=50", "healthz": "/healthz"}
    for _ in range(polls):
        for name, path in paths.items():
            started = time.perf_counter()
            assert http.get(path).status_code == 200
            timings[name].append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)
    running = sum(1 for job_id in ids if _job(http, job_id)["status"] == "running")
    base = statistics.median(timings["healthz"])
    for name in ("job", "list", "healthz"):
        values = sorted(timings[name])
        p50, p95 = statistics.median(values), values[int(0.95 * (len(values) - 1))]
        print(
            f"status latency {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({p50 / base:.2f}x healthz)"
        )
    print(f"({running} of the 8 jobs were running at the end of the polls)")
    for job_id in ids:
        http.post(f"/v1/jobs/{job_id}/cancel")


def start_figures(http: httpx.Client, jobs: int) -> None:
    figures = [_time_one_start(http, 200 + i) for i in range(jobs)]
    accepted_ms, started_s, router_s = (statistics.median(f) for f in zip(*figures, strict=True))
    print(
        f"job start: 202 answered in {accepted_ms:.1f} ms (p50 of {jobs}); 202 to its router "
        f"working {started_s:.3f} s (a router had the job after {router_s:.3f} s)"
    )


def _time_one_start(http: httpx.Client, seed: int) -> tuple[float, float, float]:
    """(ms to the 202, s from the 202 to the router working, s to a router having the job)."""
    sent = time.perf_counter()
    answer = http.post("/v1/renders", json={**JOB, "seed": seed})
    accepted = time.perf_counter()
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    router = _wait(lambda: job_router(job_id, JOBS_NAMESPACE, timeout_s=1), interval_s=0.005)
    named_at = time.perf_counter()
    _wait(lambda: ray.get(router.progress.remote())["phase"] != "starting", interval_s=0.005)
    working = time.perf_counter()
    http.post(f"/v1/jobs/{job_id}/cancel")
    _wait(lambda: _job(http, job_id)["status"] in ("cancelled", "done", "failed"), interval_s=0.1)
    return (accepted - sent) * 1000, working - accepted, named_at - accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=60)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    base = load_config("configs/local.yaml")
    storage = base.storage.model_copy(update={"path": workdir / "store"})
    config = base.model_copy(update={"storage": storage, "model_cache_dir": workdir / "models"})
    cluster = start_local_cluster(config, gpus=4, port=_port(), cpus=8)
    try:
        with httpx.Client(base_url=cluster.url, timeout=120) as http:
            start_figures(http, args.starts)
            resume_figures(http, open_store(storage))
            status_figures(http, args.polls)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
