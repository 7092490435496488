"""What the review board's pages show, read from the store (call off the event loop).

The gallery pages the run registry the way `GET /v1/jobs` pages jobs: newest first,
and a cursor that is the last id of the previous page (here: the records strictly
older than it, through the registry's own `until`). The prompt search and every
filter go through `RunRegistry.list`, so a tenant only ever reads its own records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from actors.pipeline_state import PipelineRunState
from core.config import ClusterConfig
from core.errors import NotFoundError, RequestError
from core.pipelines import StageConfig
from core.records import RUN_ID_PATTERN, RunRecord, RunRegistry, run_time
from core.typography.results import TypographyReport
from serve.ui.stage_fields import stage_fields

PAGE_SIZE = 24
CHUNK = 200
FILTERS = ("model", "style", "pipeline", "campaign", "status", "provider")
_RUN_ID = re.compile(RUN_ID_PATTERN)


@dataclass
class GalleryPage:
    records: list[RunRecord]
    next_cursor: str | None = None
    filters: dict[str, str] = field(default_factory=dict)


def gallery(
    registry: RunRegistry,
    owner: str | None,
    filters: dict[str, str],
    text: str = "",
    cursor: str | None = None,
    size: int = PAGE_SIZE,
) -> GalleryPage:
    """One page of records matching `filters` and (case-insensitively) `text` in the prompt."""
    if cursor is not None and not _RUN_ID.match(cursor):
        raise RequestError("cursor", "is not a run id from a previous page")
    wanted = {name: value for name, value in filters.items() if name in FILTERS and value}
    needle = text.strip().casefold()
    until = run_time(cursor) if cursor else None
    found: list[RunRecord] = []
    while True:
        batch = registry.list(**wanted, until=until, limit=CHUNK, owner=owner)
        for record in batch:
            if needle and needle not in record.prompt.casefold():
                continue
            found.append(record)
            if len(found) > size:
                return GalleryPage(found[:size], found[size - 1].id, wanted)
        if len(batch) < CHUNK:
            return GalleryPage(found, None, wanted)
        until = batch[-1].created_at


def lineage(registry: RunRegistry, record: RunRecord, depth: int = 20) -> list[RunRecord]:
    """The runs `record` derives from, nearest first (a re-run's original, a stage's run)."""
    chain: list[RunRecord] = []
    parent = record.parent_id
    while parent and len(chain) < depth:
        try:
            found = registry.get(parent)
        except NotFoundError:
            break
        if found.owner != record.owner:
            break  # never show another tenant's record
        chain.append(found)
        parent = found.parent_id
    return chain


def stage_rows(
    registry: RunRegistry, run: RunRecord, config: ClusterConfig | None = None
) -> list[dict[str, Any]]:
    """A pipeline run's stages in order: config, the stage's record (if it ran), inputs, and
    the fields a re-run may change (with `config`'s names and choices to pick from)."""
    if run.pipeline is None or run.stage is not None:
        return []
    try:
        state = PipelineRunState.from_record(run)
    except ValueError:
        return []
    rows = []
    for index, stage in enumerate(state.stages):
        stage_id = state.stage_runs.get(stage.name)
        record = registry.get(stage_id) if stage_id else None
        consumes = [str(item) for item in stage.consumes]
        if "previous" in consumes and index > 0:
            consumes[consumes.index("previous")] = state.stages[index - 1].name
        rows.append(
            {
                "name": stage.name,
                "config": stage.model_dump(mode="json", exclude_none=True),
                "record": record,
                "consumes": consumes,
                "approval": stage.approval,
                "rerun_from": state.rerun_from == stage.name,
                "fields": stage_fields(stage, stage_choices(config, stage)),
            }
        )
    return rows


def typography_gate(record: RunRecord) -> dict[str, Any] | None:
    """The typography gate's verdict on a run: passed, and one phrase per failed check."""
    if record.typography is None:
        return None
    try:
        report = TypographyReport.model_validate(record.typography)
    except ValueError:
        return None
    return {"passed": report.passed, "boxes": len(report.boxes), "failures": report.failures()}


def stage_choices(config: ClusterConfig | None, stage: StageConfig) -> dict[str, list[str]]:
    """What a re-run of `stage` may pick, by field: the model and style names, and the
    schedulers and adapters its model allows (none offered when it allows none)."""
    if config is None:
        return {}
    choices = {"model": sorted(config.models), "style": sorted(config.styles)}
    try:
        model = config.models[config.resolve_model(stage.model, stage.style)]
    except KeyError:
        return choices
    if model.schedulers:
        choices["scheduler"] = ["default", *model.schedulers]
    adapters = [adapter.name for adapter in model.loras if not adapter.fuse]
    if adapters:
        choices["loras"] = adapters
    return choices


def stage_of(run: RunRecord, name: str) -> StageConfig:
    """The stage `name` as the pipeline run `run` ran it; a 404 naming it otherwise."""
    try:
        stages = PipelineRunState.from_record(run).stages
    except ValueError:
        stages = []
    for stage in stages:
        if stage.name == name:
            return stage
    raise NotFoundError("stage", f"run {run.id} has no stage {name[:80]!r}")


def awaiting(registry: RunRegistry, owner: str | None, limit: int = 50) -> list[RunRecord]:
    """Pipeline runs waiting at an approval gate, newest first."""
    runs = registry.list(status="awaiting_approval", owner=owner, limit=None)
    return [run for run in runs if run.pipeline is not None and run.stage is None][:limit]


def compare_candidates(registry: RunRegistry, owner: str | None, exclude: str) -> list[RunRecord]:
    """Recent runs to offer in "compare with…"."""
    return [run for run in registry.list(owner=owner, limit=30) if run.id != exclude][:25]
