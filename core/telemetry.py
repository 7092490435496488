"""The application's own metrics, named once here and recorded through a pluggable backend.

Every name starts with ``rendercluster_``. Code anywhere (core has no Ray) records
with `count`, `observe` and `gauge`; a process that runs in Ray installs the Ray
backend (`actors.ray_metrics.install`), whose metrics Ray's exporter serves to
Prometheus (``ray_`` prefixed there; `serve.metrics_endpoint` and the chart's
ServiceMonitor take the prefix off). Without a backend nothing is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from core.records import RunRecord

__all__ = [
    "METRICS",
    "Backend",
    "Metric",
    "count",
    "count_ended_render",
    "gauge",
    "observe",
    "use_backend",
]

Kind = Literal["counter", "histogram", "gauge"]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    """One metric: its kind, help text, tag names and (histograms) bucket bounds."""

    kind: Kind
    description: str
    tags: tuple[str, ...]
    buckets: tuple[float, ...] = ()


_SECONDS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
METRICS: dict[str, Metric] = {
    "rendercluster_requests_total": Metric(
        "counter", "HTTP requests answered, by route template and status code.", ("route", "status")
    ),
    "rendercluster_rejected_requests_total": Metric(
        "counter",
        "Requests answered 429 or 503 (limits, full queues, no capacity).",
        ("status", "route"),
    ),
    "rendercluster_renders_total": Metric(
        "counter",
        "Renders that ended, by model, kind and final status.",
        ("model", "kind", "status"),
    ),
    "rendercluster_tiles_total": Metric(
        "counter", "Tiles rendered by large-format jobs (resumed tiles not counted).", ("model",)
    ),
    "rendercluster_tile_retries_total": Metric(
        "counter", "Tile calls sent again after a lost replica or a full queue.", ("model",)
    ),
    "rendercluster_seam_score": Metric(
        "histogram",
        "Seam score of finished large renders (change across seams / inside tiles).",
        ("model",),
        (0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0),
    ),
    "rendercluster_job_duration_seconds": Metric(
        "histogram",
        "Durable jobs from start to end, by kind and final status.",
        ("kind", "status"),
        _SECONDS,
    ),
    "rendercluster_gate_failures_total": Metric(
        "counter", "Typography gate checks that failed, by check.", ("check",)
    ),
    "rendercluster_queue_depth": Metric(
        "gauge", "Durable jobs queued and not yet started, by model.", ("model",)
    ),
}


class Backend(Protocol):
    """Where recorded values go."""

    def record(self, name: str, metric: Metric, value: float, tags: dict[str, str]) -> None: ...


_backend: Backend | None = None


def use_backend(backend: Backend | None) -> None:
    """Record this process's metrics into `backend` from now on (None: nowhere)."""
    global _backend
    _backend = backend


def count(name: str, value: float = 1, **tags: str) -> None:
    """Add `value` to counter `name`."""
    _record(name, "counter", value, tags)


def observe(name: str, value: float, **tags: str) -> None:
    """Put `value` in histogram `name`."""
    _record(name, "histogram", value, tags)


def gauge(name: str, value: float, **tags: str) -> None:
    """Set gauge `name` to `value`."""
    _record(name, "gauge", value, tags)


def _record(name: str, kind: Kind, value: float, tags: dict[str, str]) -> None:
    metric = METRICS[name]
    if metric.kind != kind or set(tags) != set(metric.tags):
        raise ValueError(f"{name} is a {metric.kind} tagged {metric.tags}, not {kind} {tags}")
    if kind == "counter" and value < 0:
        raise ValueError(f"{name} is a counter: it cannot go down by {value}")
    if _backend is None or (kind == "counter" and value == 0):
        return
    try:
        _backend.record(name, metric, value, {key: str(tag) for key, tag in tags.items()})
    except Exception:  # a metric must never fail the work it measures
        logger.exception("recording %s failed", name)


def count_ended_render(record: RunRecord) -> None:
    """Count a run record that reached its end: the render by model, kind and status, and
    every typography gate check it failed (by check; stray text as ``stray_text``)."""
    model = record.model or "none"
    count("rendercluster_renders_total", model=model, kind=record.kind, status=record.status)
    report = record.typography
    if not report or report.get("passed", True):
        return
    for box in report.get("boxes", []):
        for check in box.get("gate", {}).get("checks", []):
            if not check.get("passed", True):
                count("rendercluster_gate_failures_total", check=str(check.get("name")))
    stray = report.get("stray_text")
    if stray and not stray.get("passed", True):
        count("rendercluster_gate_failures_total", check="stray_text")
