"""`/v1/experiments`: store an experiment record, list, show, diff, and its HTML report.

The caller's tenant owns what it stores and sees only its own; an experiment may
name only runs its caller can see, and its report shows only those runs' images.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import Field

from core.errors import NotFoundError, RequestError
from core.experiments.gate import compare
from core.experiments.record import ExperimentRecord, ExperimentRegistry
from core.experiments.report import Thumbs, report_html, thumbnail_uri
from core.records import RunRegistry, new_run_id, run_time
from core.store import ArtifactStore
from core.tenants import visible
from serve.api_app import Context, IngressContext, JsonRoute, authorized, base_url, tenant_of
from serve.responses import ANSWER, Answer

router = APIRouter(dependencies=[Depends(authorized)], route_class=JsonRoute)

_LISTED = ("id", "created_at", "suite", "suite_sha256", "scorer", "models", "summary")


class ExperimentSaved(Answer):
    """A stored experiment: its id (the server's), owner and report."""

    id: str = Field(description="The experiment's id.")
    owner: str | None = Field(description="The tenant that owns it (None: local mode).")
    report_url: str = Field(description="Its HTML report.")


class ExperimentSummary(Answer):
    """An experiment without its samples."""

    id: str
    created_at: Any = None
    suite: str | None = None
    suite_sha256: str | None = None
    scorer: str | None = None
    models: Any = None
    summary: Any = None


class ExperimentList(Answer):
    experiments: list[ExperimentSummary] = Field(description="Newest first.")


class MetricComparison(Answer):
    """One metric of one model pair in both experiments."""

    baseline_model: str
    model: str
    metric: str
    baseline: float | None
    value: float | None
    drop: float | None = Field(description="> 0: worse than the baseline.")


class ExperimentDiff(Answer):
    same_suite: bool = Field(description="Whether both ran the same suite file.")
    metrics: list[MetricComparison]


def experiments(ctx: IngressContext) -> ExperimentRegistry:
    return ExperimentRegistry(ctx.store)


def _visible_runs(registry: RunRegistry, record: ExperimentRecord, tenant: str | None) -> None:
    for index, sample in enumerate(record.samples):
        if sample.run_id is None:
            continue
        try:
            run = registry.get(sample.run_id)
        except (NotFoundError, RequestError):
            run = None
        if run is None or not visible(run.owner, tenant):
            raise RequestError(f"samples.{index}.run_id", f"no run {sample.run_id!r}")


@router.post("/v1/experiments", status_code=201, response_model=ExperimentSaved, **ANSWER)
async def save_experiment(
    record: ExperimentRecord, request: Request, ctx: Context
) -> dict[str, Any]:
    """Store an experiment record (made by `rendercluster eval`) under a new id, owned by
    the caller."""
    tenant = tenant_of(request)
    await asyncio.to_thread(_visible_runs, ctx.registry, record, tenant)
    made = new_run_id()  # the server's id: a client's could overwrite another's record
    record = record.model_copy(update={"id": made, "created_at": run_time(made), "owner": tenant})
    saved = await asyncio.to_thread(experiments(ctx).save, record)
    url = f"{base_url(request)}/v1/experiments/{saved.id}/report"
    return {"id": saved.id, "owner": saved.owner, "report_url": url}


@router.get("/v1/experiments", response_model=ExperimentList, **ANSWER)
async def list_experiments(
    ctx: Context,
    suite: str | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    """The caller's experiments, newest first (without their samples)."""
    found = await asyncio.to_thread(experiments(ctx).list, limit, suite)
    return {"experiments": [r.model_dump(mode="json", include=set(_LISTED)) for r in found]}


@router.get("/v1/experiments/{experiment_id}", response_model=ExperimentRecord)
async def get_experiment(experiment_id: str, ctx: Context) -> ExperimentRecord:
    """One experiment record, every sample included."""
    return await asyncio.to_thread(experiments(ctx).get, experiment_id)


@router.get("/v1/experiments/{baseline}/diff/{candidate}", response_model=ExperimentDiff, **ANSWER)
async def diff_experiments(baseline: str, candidate: str, ctx: Context) -> dict[str, Any]:
    """Every metric of every model the two share: both values and the drop (> 0: worse)."""
    registry = experiments(ctx)
    a = await asyncio.to_thread(registry.get, baseline)
    b = await asyncio.to_thread(registry.get, candidate)
    same_suite = a.suite_sha256 == b.suite_sha256
    return {"same_suite": same_suite, "metrics": [row._asdict() for row in compare(a, b)]}


def thumbnails(
    store: ArtifactStore, registry: RunRegistry, record: ExperimentRecord, tenant: str | None
) -> Thumbs:
    """Each sample's picture from its run's image, for runs the caller can see."""
    thumbs = {}
    for sample in record.samples:
        if sample.run_id is None:
            continue
        try:
            run = registry.get(sample.run_id)
            if visible(run.owner, tenant) and "image" in run.outputs:
                image = store.get_bytes(run.outputs["image"])
                thumbs[(sample.case, sample.model, sample.seed)] = thumbnail_uri(image)
        except (NotFoundError, RequestError, OSError, ValueError):
            continue  # a deleted or unreadable image: the report shows the figures only
    return thumbs


async def report(experiment_id: str, ctx: IngressContext, tenant: str | None) -> str:
    """The experiment's HTML report (the caller's experiments only)."""
    record = await asyncio.to_thread(experiments(ctx).get, experiment_id)
    thumbs = await asyncio.to_thread(thumbnails, ctx.store, ctx.registry, record, tenant)
    return await asyncio.to_thread(report_html, record, thumbs)


@router.get(
    "/v1/experiments/{experiment_id}/report",
    response_class=Response,
    responses={200: {"description": "The HTML report.", "content": {"text/html": {}}}},
)
async def experiment_report(experiment_id: str, request: Request, ctx: Context) -> HTMLResponse:
    """The report: the models side by side, case by case, with figures."""
    return HTMLResponse(await report(experiment_id, ctx, tenant_of(request)))
