"""Serving overhead and scale-out of the render service (issue: the render service).

Prints, measured in one run on an embedded cluster (configs/local.yaml, 4 logical GPUs):
- startup time of the embedded cluster (what `rendercluster up` waits for);
- median latency of a 64x64 tiny render through HTTP vs a direct pipeline call in
  this process (same model, same steps), and their ratio (the serving overhead);
- where the HTTP time goes, from each render's own record: the replica's compute,
  the ingress's render path around it (validation, the handle call and transfer,
  PNG encoding, store and record writes: `total_s - compute_s`), and the rest (the
  proxy and ingress hops, auth, the JSON answer: HTTP wall - `total_s`);
- the replica count the autoscaler reaches under 24 concurrent requests.

Run: .venv/bin/python bench/bench_serving.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch
from ray import serve

from cli.embedded import free_port
from core.config import APP_NAME, deployment_name
from core.config_file import load_config
from core.schemas import GenerateRequest
from serve.engine import RenderEngine
from serve.loader import load_model
from serve.local_cluster import start_local_cluster

BODY = {"prompt": "a red barn", "model": "quality", "width": 64, "height": 64, "seed": 1}


def direct_latency(config, repeats: int) -> float:
    """Median seconds of the same render called directly in this process (1 thread)."""
    torch.set_num_threads(config.models["quality"].torch_threads)
    model = config.models["quality"]
    engine = RenderEngine(load_model(model, config.model_cache_dir), 1, True)
    request = GenerateRequest(
        prompt=BODY["prompt"],
        width=64,
        height=64,
        steps=model.default_steps,
        guidance=model.default_guidance,
        seed=1,
    )
    engine.render([request])  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        engine.render([request])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def http_latency(url: str, repeats: int) -> tuple[float, dict[str, float]]:
    """Median HTTP seconds, and the medians of the records' parts (see the module)."""
    with httpx.Client(base_url=url, timeout=120) as http:
        http.post("/v1/renders", json=BODY).raise_for_status()  # warm-up
        times, parts = [], {"compute": [], "render path": [], "hops and answer": []}
        for _ in range(repeats):
            started = time.perf_counter()
            answer = http.post("/v1/renders", json=BODY)
            wall = time.perf_counter() - started
            answer.raise_for_status()
            times.append(wall)
            timings = http.get(f"/v1/runs/{answer.json()['id']}").json()["timings"]
            parts["compute"].append(timings["compute_s"])
            parts["render path"].append(timings["total_s"] - timings["compute_s"])
            parts["hops and answer"].append(wall - timings["total_s"])
    return statistics.median(times), {k: statistics.median(v) for k, v in parts.items()}


def peak_replicas_under_load(url: str, concurrent: int = 24) -> int:
    body = {**BODY, "width": 192, "height": 192}
    peak = 0

    def one(seed: int) -> None:
        httpx.post(f"{url}/v1/renders", json={**body, "seed": seed}, timeout=600).raise_for_status()

    with ThreadPoolExecutor(concurrent) as pool:
        futures = [pool.submit(one, seed) for seed in range(concurrent)]
        while not all(f.done() for f in futures):
            states = (
                serve.status()
                .applications[APP_NAME]
                .deployments[deployment_name("quality")]
                .replica_states
            )
            peak = max(peak, states.get("RUNNING", 0))
            time.sleep(0.2)
        for future in futures:
            future.result()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    base = load_config("configs/local.yaml")
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    config = base.model_copy(
        update={
            "model_cache_dir": workdir / "models",
            "storage": base.storage.model_copy(update={"path": workdir / "store"}),
        }
    )
    cluster = start_local_cluster(config, gpus=4, port=free_port())
    try:
        print(f"startup of the embedded cluster: {cluster.startup_s:.1f} s")
        over_http, parts = http_latency(cluster.url, args.repeats)
        direct = direct_latency(config, args.repeats)
        print(
            f"64x64 render, median of {args.repeats}: HTTP {over_http * 1000:.0f} ms, "
            f"direct pipeline call {direct * 1000:.0f} ms, ratio {over_http / direct:.2f} "
            f"(overhead {1000 * (over_http - direct):.0f} ms)"
        )
        print(
            "  where the HTTP time goes (medians): "
            + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in parts.items())
        )
        peak = peak_replicas_under_load(cluster.url)
        quality = config.models["quality"].autoscaling
        print(
            f"24 concurrent 192x192 renders: quality reached {peak} running replicas "
            f"(min {quality.min_replicas}, max {quality.max_replicas}; 4 logical GPUs shared "
            f"with the other models)"
        )
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
