"""The PR gate: does a candidate experiment drop any metric more than allowed?

`--max-drop adherence=0.05` allows adherence to fall by at most 0.05 (absolute); for a
metric where lower is better (latency, seam score, ...) a drop is a rise. Models are
compared by name, and the one model left on each side (if one is) with each other.
"""

from __future__ import annotations

from typing import NamedTuple

from core.errors import RequestError
from core.experiments.metrics import HIGHER_IS_BETTER
from core.experiments.record import ExperimentRecord

__all__ = ["Comparison", "compare", "parse_max_drops", "regressions"]


def parse_max_drops(items: list[str]) -> dict[str, float]:
    """``["adherence=0.05"]`` -> ``{"adherence": 0.05}``; bad items name the metric."""
    drops: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in HIGHER_IS_BETTER:
            known = ", ".join(HIGHER_IS_BETTER)
            raise RequestError(
                "max-drop", f"expected METRIC=VALUE with METRIC one of {known}, got {item!r}"
            )
        try:
            drops[name] = float(value)
        except ValueError:
            raise RequestError("max-drop", f"{name}: {value!r} is not a number") from None
        if drops[name] < 0:
            raise RequestError("max-drop", f"{name}: the allowed drop must be >= 0")
    return drops


def _pairs(baseline: ExperimentRecord, candidate: ExperimentRecord) -> list[tuple[str, str]]:
    """Models of the same name; and the one model left on each side, if one is."""
    pairs = [(name, name) for name in candidate.summary if name in baseline.summary]
    old = [name for name in baseline.summary if name not in candidate.summary]
    new = [name for name in candidate.summary if name not in baseline.summary]
    if len(old) == 1 and len(new) == 1:
        pairs.append((old[0], new[0]))
    if not pairs:
        raise RequestError(
            "baseline",
            f"experiment {baseline.id} judged {', '.join(baseline.summary)}; this one "
            f"{', '.join(candidate.summary)}: no model to compare",
        )
    return pairs


class Comparison(NamedTuple):
    """One metric of one model pair: its value in each experiment and how far it dropped."""

    baseline_model: str
    model: str
    metric: str
    baseline: float | None
    value: float | None
    drop: float | None  # > 0: worse than the baseline (either direction of metric)


def compare(baseline: ExperimentRecord, candidate: ExperimentRecord) -> list[Comparison]:
    """Every metric of every model pair the two experiments share."""
    rows = []
    for old_model, new_model in _pairs(baseline, candidate):
        old, new = baseline.summary[old_model], candidate.summary[new_model]
        for metric, higher in HIGHER_IS_BETTER.items():
            if metric not in old and metric not in new:
                continue
            a, b = old.get(metric), new.get(metric)
            drop = None if a is None or b is None else (a - b if higher else b - a)
            rows.append(Comparison(old_model, new_model, metric, a, b, drop))
    return rows


def regressions(
    baseline: ExperimentRecord, candidate: ExperimentRecord, max_drops: dict[str, float]
) -> list[str]:
    """Every metric that dropped more than allowed, in words (empty: the gate passes)."""
    if baseline.suite_sha256 != candidate.suite_sha256:
        raise RequestError(
            "baseline", f"experiment {baseline.id} ran another suite (or other inputs)"
        )
    return [
        f"{row.model} {row.metric} {row.value:.4g} vs {row.baseline:.4g} in {baseline.id} "
        f"({row.baseline_model}): dropped {row.drop:.4g} > {max_drops[row.metric]:g}"
        for row in compare(baseline, candidate)
        if row.metric in max_drops and row.drop is not None and row.drop > max_drops[row.metric]
    ]
