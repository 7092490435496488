"""Figures of an experiment: per case and model (over seeds), and per model (whole suite).

Each metric has a direction, which the PR gate uses to tell a drop from a gain.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping

from core.experiments.record import CaseResult, Sample

__all__ = ["HIGHER_IS_BETTER", "case_results", "summary"]

HIGHER_IS_BETTER = {
    "adherence": True,  # mean scorer score; a failed render scores 0
    "hires_kept": True,  # share of hires renders that keep every clause their base image had
    "gate_pass_rate": True,  # share of text renders the typography gate passed
    "seam_score": False,  # large-format renders' seam score (1 = no visible seam)
    "layout_variance": False,  # across seeds; a fully stated prompt should fix the layout
    "latency_s": False,  # client-seen seconds per image
    "cost_per_image": False,  # USD per image (hosted models; 0 on own GPUs)
}


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _figures(samples: list[Sample], variances: list[float], wanted: list[str]) -> dict[str, float]:
    done = [s for s in samples if s.status != "failed"]
    gated = [s.gate_passed for s in samples if s.gate_passed is not None]
    figures = {
        "adherence": _mean(s.adherence for s in samples),
        "hires_kept": _mean(None if s.hires_kept is None else float(s.hires_kept) for s in samples),
        "gate_pass_rate": _mean(float(g) for g in gated),
        "seam_score": _mean(s.seam_score for s in samples),
        "layout_variance": _mean(variances),
        "latency_s": _mean(s.latency_s for s in done),
        "cost_per_image": _mean(s.cost_usd for s in done),
    }
    return {name: round(v, 6) for name, v in figures.items() if name in wanted and v is not None}


def case_results(
    samples: list[Sample], variances: Mapping[tuple[str, str], float], wanted: list[str]
) -> list[CaseResult]:
    """One result per (case, model), in the order the samples were made."""
    keys = list(dict.fromkeys((s.case, s.model) for s in samples))
    return [
        CaseResult(
            case=case,
            model=model,
            metrics=_figures(
                [s for s in samples if (s.case, s.model) == (case, model)],
                [variances[(case, model)]] if (case, model) in variances else [],
                wanted,
            ),
        )
        for case, model in keys
    ]


def summary(
    samples: list[Sample], variances: Mapping[tuple[str, str], float], wanted: list[str]
) -> dict[str, dict[str, float]]:
    """Per model, each wanted metric over the whole suite (absent when nothing measured it)."""
    models = list(dict.fromkeys(s.model for s in samples))
    return {
        model: _figures(
            [s for s in samples if s.model == model],
            [v for (_, m), v in variances.items() if m == model],
            wanted,
        )
        for model in models
    }
