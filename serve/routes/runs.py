"""`GET /v1/runs` and `GET /v1/runs/{id}`: query the run records."""

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, JsonValue

from core.records import RunRecord, diff_records
from core.redact import public_message
from serve.api_app import Context, JsonRoute, authorized, tenant_of


class RunList(BaseModel):
    runs: list[RunRecord] = Field(description="Matching records, newest first.")


class FieldChange(BaseModel):
    field: str = Field(description="Dotted path of the field.")
    a: JsonValue = Field(description="Its value in run a (None: absent).")
    b: JsonValue = Field(description="Its value in run b (None: absent).")


class RunDiff(BaseModel):
    changes: list[FieldChange]


router = APIRouter(dependencies=[Depends(authorized)], route_class=JsonRoute)


@router.get("/v1/runs", response_model=RunList)
async def list_runs(
    ctx: Context,
    request: Request,
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
    """Run records matching every given filter, newest first (the caller's tenant's only)."""
    records = await asyncio.to_thread(
        ctx.registry.list,
        model=model,
        style=style,
        pipeline=pipeline,
        campaign=campaign,
        status=status,
        provider=provider,
        since=since,
        until=until,
        limit=limit,
        owner=tenant_of(request),
    )
    return {"runs": [public_record(record) for record in records]}


@router.get("/v1/runs/{run_id}", response_model=RunRecord)
async def get_run(run_id: str, ctx: Context) -> dict[str, Any]:
    """One run record."""
    return public_record(await ctx.renders.visible_record(run_id))


@router.get("/v1/runs/{run_a}/diff/{run_b}", response_model=RunDiff)
async def diff_runs(run_a: str, run_b: str, ctx: Context) -> dict[str, Any]:
    """Every field that differs between two runs."""
    a = await ctx.renders.visible_record(run_a)
    b = await ctx.renders.visible_record(run_b)
    changes = diff_records(a, b)
    return {"changes": [{"field": c.field, "a": c.a, "b": c.b} for c in changes]}


def public_record(record: RunRecord) -> dict[str, Any]:
    """A run record as JSON, its error without paths, tracebacks or addresses."""
    view = record.model_dump(mode="json")
    view["error"] = public_message(record.error)
    return view
