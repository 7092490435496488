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
from core.errors import NotFoundError, RequestError
from core.records import RUN_ID_PATTERN, RunRecord, RunRegistry, run_time
from core.typography.results import TypographyReport

PAGE_SIZE = 24
CHUNK = 200
FILTERS = ("model", "style", "pipeline", "campaign", "status", "provider")
RERUN_FIELDS = ("steps", "guidance", "strength", "seed", "width", "height")  # a stage's own
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


def stage_rows(registry: RunRegistry, run: RunRecord) -> list[dict[str, Any]]:
    """A pipeline run's stages in order: config, the stage's record (if it ran), inputs."""
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


def awaiting(registry: RunRegistry, owner: str | None, limit: int = 50) -> list[RunRecord]:
    """Pipeline runs waiting at an approval gate, newest first."""
    runs = registry.list(status="awaiting_approval", owner=owner, limit=None)
    return [run for run in runs if run.pipeline is not None and run.stage is None][:limit]


def compare_candidates(registry: RunRegistry, owner: str | None, exclude: str) -> list[RunRecord]:
    """Recent runs to offer in "compare with…"."""
    return [run for run in registry.list(owner=owner, limit=30) if run.id != exclude][:25]
