"""One hires job on a three-node local cluster; the node running its router is removed.

Run by `test_multinode_jobs.py` in a process of its own (a `ray.cluster_utils.Cluster`
cannot share the test session's Ray). The head node has no CPUs, so every actor that
asks for CPU (ingress, replicas, routers) lives on the two GPU worker nodes; the
node of the job's router is removed mid-job and the job must end done on the other.
Prints one JSON line with what happened.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import ray
from ray import serve
from ray.cluster_utils import Cluster
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeInstanceDetails

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from actors.job_supervisor import JOBS_NAMESPACE, ensure_supervisor  # noqa: E402
from actors.router_pool import job_router  # noqa: E402
from core.config import APP_NAME  # noqa: E402
from core.config_file import load_config  # noqa: E402
from serve.app import application  # noqa: E402
from serve.local_cluster import wait_running  # noqa: E402

# Long enough to be running when its router is looked up: with replicas warmed up before
# they serve, a 50-tile, one-step job could end first (CI: "gave up waiting for the job's
# router").
JOB = {
    "prompt": "a city skyline at dusk",
    "model": "quality",
    "width": 1536,
    "height": 512,
    "steps": 6,
    "seed": 99,
    "tile_size": 128,
    "mode": "hires",
    "wait": False,
}


def _config(store: Path, models: Path):
    base = load_config(ROOT / "configs" / "local.yaml")
    quality = base.models["quality"]
    quality = quality.model_copy(
        update={
            "autoscaling": quality.autoscaling.model_copy(
                update={"min_replicas": 2, "max_replicas": 2}
            )
        }
    )
    return base.model_copy(
        update={
            "models": {"quality": quality},
            "styles": {},
            "default_style": None,
            "pipelines": {},
            "storage": base.storage.model_copy(update={"path": store}),
            "model_cache_dir": models,
            "jobs": base.jobs.model_copy(update={"lease_ttl_s": 5}),
        }
    )


def _until(probe, what: str, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.2)


def main(workdir: Path, port: int) -> dict:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0})
    workers = [cluster.add_node(num_cpus=4, num_gpus=2) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        config = _config(workdir / "store", workdir / "models")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(application(config), name=APP_NAME, route_prefix="/", blocking=False)
        wait_running()
        ensure_supervisor(config, APP_NAME)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            job_id = http.post("/v1/renders", json=JOB, timeout=300).json()["id"]
            _until(
                lambda: (_job(http, job_id) or {}).get("progress", {}).get("done", 0) >= 2,
                "2 tiles",
            )
            router = _until(lambda: job_router(job_id, JOBS_NAMESPACE), "the job's router")
            router_node = ray.get(router.where.remote())["node_id"]
            victim = next(w for w in workers if w.node_id == router_node)
            replicas_there = _replicas_on(router_node)
            cluster.remove_node(victim)
            job = _until(lambda: _ended(_job(http, job_id)), "the job to end", timeout_s=600)
            view = http.get(f"/v1/renders/{job_id}", timeout=60).json()
        return {
            "status": job["status"],
            "attempts": job["attempts"],
            "replicas_on_removed_node": replicas_there,
            "tiles_reused": view.get("result", {}).get("metrics", {}).get("tiles_reused"),
            "error": job.get("error"),
        }
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


def _replicas_on(node_id: str) -> int:
    """How many model replicas Serve runs on the node."""
    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    deployment = details.applications[APP_NAME].deployments["model-quality"]
    return sum(1 for r in deployment.replicas if r.node_id == node_id and r.state == "RUNNING")


def _job(http: httpx.Client, job_id: str) -> dict | None:
    """The job, or None while no ingress answers (one may have gone with the node)."""
    try:
        answer = http.get(f"/v1/jobs/{job_id}", timeout=10)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _ended(job: dict | None) -> dict | None:
    return job if job is not None and job["status"] in ("done", "failed", "cancelled") else None


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))))
