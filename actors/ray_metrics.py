"""The Ray backend of `core.telemetry`: Ray's metrics, which its exporter serves to Prometheus.

Each process that records metrics (ingress replicas, tile routers, the job
supervisor) calls `install` once; instruments are made on first use, one per name
per process, and Ray aggregates them across processes and nodes.
"""

from __future__ import annotations

import threading
from typing import Any

from ray.util import metrics

from core import telemetry
from core.telemetry import Metric

__all__ = ["RayMetrics", "install"]


class RayMetrics:
    """Records `core.telemetry` metrics as Ray `Counter`, `Histogram` and `Gauge`."""

    def __init__(self) -> None:
        self._instruments: dict[str, Any] = {}
        self._lock = threading.Lock()

    def record(self, name: str, metric: Metric, value: float, tags: dict[str, str]) -> None:
        instrument = self._instrument(name, metric)
        if metric.kind == "counter":
            instrument.inc(value, tags=tags)
        elif metric.kind == "histogram":
            instrument.observe(value, tags=tags)
        else:
            instrument.set(value, tags=tags)

    def _instrument(self, name: str, metric: Metric) -> Any:
        with self._lock:
            if name not in self._instruments:
                self._instruments[name] = _make(name, metric)
            return self._instruments[name]


def _make(name: str, metric: Metric) -> Any:
    if metric.kind == "counter":
        return metrics.Counter(name, description=metric.description, tag_keys=metric.tags)
    if metric.kind == "histogram":
        return metrics.Histogram(
            name,
            description=metric.description,
            boundaries=list(metric.buckets),
            tag_keys=metric.tags,
        )
    return metrics.Gauge(name, description=metric.description, tag_keys=metric.tags)


def install() -> None:
    """Record this process's metrics in Ray from now on."""
    telemetry.use_backend(RayMetrics())
