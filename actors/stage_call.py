"""One pipeline stage on its way through `StageRunner.run`, and the records it ends with.

`StageCall` carries what the stage renders with (its cache key among them); the
functions below build the stage's record for each way it can end: a cache hit,
a gate failure kept for review, a failure, or a render (hosted calls paid for).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from actors.pipeline_state import (
    CACHE_PREFIX,
    GateFailed,
    PipelineRunState,
    StageImage,
    StageOutput,
    failure_reason,
)
from core.config import ModelConfig
from core.pipelines import StageConfig
from core.records import RunRecord, with_typography
from core.remote.record import provider_fields

__all__ = ["StageCall", "cache_hit_record", "done_record", "failed_record", "reviewed_record"]


@dataclass
class StageCall:
    """One stage of one run on its way through `StageRunner.run`."""

    run: RunRecord
    state: PipelineRunState
    index: int
    previous: StageImage | None
    model_name: str
    model: ModelConfig
    seed: int
    params: dict[str, Any]  # every parameter it renders with (its cache key's)
    key: str  # the stage cache key
    record: RunRecord  # the stage's record so far
    started: float  # time.perf_counter() when the stage began

    @property
    def stage(self) -> StageConfig:
        return self.state.stages[self.index]

    @property
    def entry_key(self) -> str:
        """Where the stage's cache entry is stored."""
        return f"{CACHE_PREFIX}/{self.key[:2]}/{self.key}.json"

    @property
    def forced(self) -> bool:
        """A re-run recomputes this stage, cache or not."""
        force_from = self.state.force_from
        return force_from is not None and self.index >= force_from

    def total_s(self) -> float:
        return round(time.perf_counter() - self.started, 4)


def cache_hit_record(call: StageCall, entry: dict[str, Any]) -> RunRecord:
    """The stage's record when its output comes from cache entry `entry`."""
    return call.record.model_copy(
        update={
            "cache": "hit",
            "outputs": {"image": entry["output"], "cache_entry": call.entry_key},
            "metrics": entry["metrics"],
            "timings": {"total_s": call.total_s()},
            "typography": entry.get("typography"),
        }
    )


def reviewed_record(call: StageCall, failed: GateFailed) -> RunRecord:
    """The stage's record when its text failed the gate: the output is kept for review."""
    reviewed = call.record.model_copy(
        update={"outputs": {"image": failed.output_key}, "timings": {"total_s": call.total_s()}}
    )
    return with_typography(reviewed, failed.report)


def failed_record(call: StageCall, exc: BaseException) -> RunRecord:
    """The stage's record when it failed with `exc`."""
    return call.record.model_copy(
        update={
            "status": "failed",
            "error": failure_reason(call.stage, exc),
            "timings": {"total_s": call.total_s()},
        }
    )


def done_record(call: StageCall, result: StageOutput, output: StageImage) -> RunRecord:
    """The stage's record when it rendered `result`, stored as `output`."""
    record = call.record.model_copy(
        update={
            "outputs": {"image": output.key, "cache_entry": call.entry_key},
            "metrics": result.metrics,
            "timings": {**result.timings, "total_s": call.total_s()},
            **provider_fields(result.provider, result.extra_providers),
        }
    )
    report = result.typography
    return record if report is None else with_typography(record, report)
