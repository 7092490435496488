"""`/v1/jobs`: every durable job (large renders, upscales, pipeline runs, campaigns).

Answers come from the store only, so they are quick whatever the cluster is
doing; cancelling goes through the job supervisor.
"""

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from core.jobs.model import Job, JobKind, JobStatus
from core.redact import public_message
from serve.api_app import Context, JsonRoute, authorized, tenant_of
from serve.responses import ANSWER, JobList, JobView

router = APIRouter(dependencies=[Depends(authorized)], route_class=JsonRoute)


def job_view(job: Job) -> dict[str, Any]:
    """The public JSON of a job (its lease and request internals left out)."""
    view = job.model_dump(mode="json", exclude={"lease", "request", "cancel_requested"})
    view["location"] = f"/v1/jobs/{job.id}"
    if view.get("error"):
        view["error"]["message"] = public_message(view["error"]["message"])
    return view


@router.get("/v1/jobs/{job_id}", response_model=JobView, **ANSWER)
async def get_job(job_id: str, ctx: Context) -> dict[str, Any]:
    """One job: status, progress, result or error, attempts, webhook deliveries."""
    return job_view(await ctx.renders.jobs.get(job_id))


@router.get("/v1/jobs", response_model=JobList, **ANSWER)
async def list_jobs(
    ctx: Context,
    request: Request,
    status: JobStatus | None = None,
    kind: JobKind | None = None,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> dict[str, Any]:
    """Jobs newest first; `next_cursor` fetches the next page."""
    owner = tenant_of(request)
    page = await asyncio.to_thread(ctx.renders.jobs.jobs.page, status, kind, owner, cursor, limit)
    return {"jobs": [job_view(job) for job in page.jobs], "next_cursor": page.next_cursor}


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobView, **ANSWER)
async def cancel_job(job_id: str, ctx: Context) -> dict[str, Any]:
    """Stop a job: tiles in flight are abandoned, nothing is delivered."""
    return job_view(await ctx.renders.jobs.cancel(job_id))


__all__ = ["job_view", "router"]
