"""`POST /v1/upscale`: make an image billboard-sized with a tiled upscaler model (a job)."""

from typing import Any

from fastapi import APIRouter, Depends, Request

from core.schemas import UpscaleRequestBody
from serve.api_app import Context, JsonRoute, authorized, base_url
from serve.idempotency import Hold
from serve.responses import ANSWER, RenderView, accepted_as
from serve.routes.renders import accepted, finished

router = APIRouter(dependencies=[Depends(authorized)], route_class=JsonRoute)


@router.post(
    "/v1/upscale",
    response_model=RenderView,
    responses=accepted_as(RenderView, "The upscale job"),
    **ANSWER,
)
async def upscale(
    body: UpscaleRequestBody,
    request: Request,
    ctx: Context,
    hold: Hold,
) -> Any:
    """Queue a tiled upscale; 202 with the job, or wait and answer with the result."""
    key_body = body.model_dump(mode="json")
    claimed = await hold.claimed(key_body)
    if claimed is not None:
        job = await ctx.renders.jobs.get(claimed)
    else:
        key = None if hold.key is None else (hold.key, key_body)
        job = await ctx.renders.start_upscale(body, key)
    if not body.wait:
        return accepted(await ctx.renders.job_view(job.id, base_url(request)), job.id)
    return await finished(ctx, await ctx.renders.jobs.wait(job.id), request)
