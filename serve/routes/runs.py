"""`GET /v1/runs` and `GET /v1/runs/{id}`: query the run records."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query

from serve.api_app import Context, authorized

router = APIRouter(dependencies=[Depends(authorized)])


@router.get("/v1/runs")
async def list_runs(
    ctx: Context,
    model: str | None = None,
    style: str | None = None,
    pipeline: str | None = None,
    campaign: str | None = None,
    status: str | None = None,
    provider: str | None = Query(None, description="Only hosted calls to this provider."),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> dict[str, Any]:
    """Run records matching every given filter, newest first."""
    records = ctx.registry.list(
        model=model,
        style=style,
        pipeline=pipeline,
        campaign=campaign,
        status=status,
        provider=provider,
        since=since,
        until=until,
        limit=limit,
    )
    return {"runs": [record.model_dump(mode="json") for record in records]}


@router.get("/v1/runs/{run_id}")
async def get_run(run_id: str, ctx: Context) -> dict[str, Any]:
    """One run record."""
    return ctx.registry.get(run_id).model_dump(mode="json")


@router.get("/v1/runs/{run_a}/diff/{run_b}")
async def diff_runs(run_a: str, run_b: str, ctx: Context) -> dict[str, Any]:
    """Every field that differs between two runs."""
    changes = ctx.registry.diff(run_a, run_b)
    return {"changes": [{"field": c.field, "a": c.a, "b": c.b} for c in changes]}
