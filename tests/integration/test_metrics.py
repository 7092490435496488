"""The rendercluster_* metrics of a running cluster, scraped as `up --metrics-port` serves them.

A render, a large render, a typography gate failure and a 503 each move the
metrics named for them. The gate failure and the 503 come from a second
application with an impossible gate and a one-request queue, deleted at the end.
"""

from __future__ import annotations

import contextlib
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import ray
from ray import serve

from actors.job_supervisor import supervisor
from core.config import ClusterConfig
from core.telemetry import METRICS
from core.typography import tesseract_available
from serve.app import application
from serve.local_cluster import wait_running
from tests.integration.test_typography_serve import BOX
from tests.waiting import wait_until

STRICT = "strict-metrics"
_SAMPLE = re.compile(r"^(rendercluster_\w+?)(?:_bucket|_count|_sum)?\{(.*)\} ([0-9.e+-]+)$")


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """(name, tags) -> value of every rendercluster_* sample (histograms by their count)."""
    samples = {}
    for line in httpx.get(url, timeout=30).text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or (line.split("{")[0].endswith("_bucket")):
            continue
        if line.split("{")[0].endswith("_sum"):
            continue
        tags = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        own = {(k, v) for k, v in tags if k in METRICS[match.group(1)].tags}
        key = (match.group(1), frozenset(own))
        samples[key] = samples.get(key, 0.0) + float(match.group(3))
    return samples


def total(samples: dict, name: str, **tags: str) -> float:
    wanted = set(tags.items())
    return sum(v for (n, t), v in samples.items() if n == name and wanted <= t)


def strict_config(base: ClusterConfig) -> ClusterConfig:
    data = base.model_dump(mode="json")
    quality = data["models"]["quality"]
    quality.update(max_ongoing_requests=1, max_queued_requests=1)
    quality["autoscaling"].update(min_replicas=1, max_replicas=1)
    data.update(models={"quality": quality}, styles={}, default_style=None, pipelines={})
    data["typography"]["gate"]["min_contrast"] = 21  # no text can pass
    return ClusterConfig.model_validate(data)


@pytest.mark.skipif(not tesseract_available(), reason="tesseract missing (tesseract-ocr)")
def test_a_render_a_large_render_a_gate_failure_and_a_503_move_their_metrics(cluster):
    before = scrape(cluster.metrics_url)
    serve.run(application(strict_config(cluster.config)), name=STRICT, route_prefix="/strict")
    try:
        wait_running()
        with cluster.client() as http:
            small = {"prompt": "a kite", "width": 256, "height": 256, "steps": 2, "seed": 1}
            assert http.post("/v1/renders", json=small).status_code == 200
            large = {**small, "width": 640, "height": 320, "mode": "hires", "steps": 4}
            assert http.post("/v1/renders", json=large, timeout=600).status_code == 200
            gated = http.post("/strict/v1/renders", json={**small, "text_boxes": [BOX]})
            assert gated.status_code == 422 and "typography gate failed" in gated.text
            slow = {**small, "steps": 8}
            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(
                    lambda i: http.post("/strict/v1/renders", json={**slow, "seed": i}).status_code,
                    range(8),
                ))  # fmt: skip
            assert 503 in codes, codes
    finally:
        serve.delete(STRICT)
        with contextlib.suppress(ValueError):
            ray.kill(supervisor(STRICT), no_restart=True)

    def moved(after: dict) -> list[str]:
        still = []
        checks = {
            "requests": ("rendercluster_requests_total", {"route": "/v1/renders", "status": "200"}),
            "renders": ("rendercluster_renders_total", {"model": "quality", "status": "done"}),
            "gate": ("rendercluster_renders_total", {"status": "failed"}),
            "gate checks": ("rendercluster_gate_failures_total", {"check": "contrast"}),
            "tiles": ("rendercluster_tiles_total", {"model": "quality"}),
            "seams": ("rendercluster_seam_score", {"model": "quality"}),
            "jobs": ("rendercluster_job_duration_seconds", {"kind": "hires", "status": "done"}),
            "503": ("rendercluster_rejected_requests_total", {"status": "503"}),
        }
        for what, (name, tags) in checks.items():
            if total(after, name, **tags) <= total(before, name, **tags):
                still.append(what)
        return still

    started = time.monotonic()
    wait_until(  # Ray exports every few seconds
        lambda: moved(scrape(cluster.metrics_url)),
        lambda missing: not missing,
        timeout_s=90,
        interval_s=2,
        what="every metric to move",
    )
    after = scrape(cluster.metrics_url)
    assert ("rendercluster_queue_depth", frozenset({("model", "quality")})) in after
    print(f"\nall moved within {time.monotonic() - started:.1f}s of the last request")
