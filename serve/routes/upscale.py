"""`POST /v1/upscale`: make an image billboard-sized with a tiled upscaler model."""

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from core.schemas import UpscaleRequestBody
from serve.api_app import Context, authorized, base_url, error_response

router = APIRouter(dependencies=[Depends(authorized)])


@router.post("/v1/upscale", response_model=None)
async def upscale(body: UpscaleRequestBody, request: Request, ctx: Context) -> Any:
    """Start a tiled upscale; 202 with the job id, or wait and answer with the result."""
    record = ctx.renders.start_upscale(body)
    url = base_url(request)
    if not body.wait:
        return JSONResponse(status_code=202, content=await ctx.renders.job_view(record.id, url))
    final = await ctx.renders.jobs.wait(record.id)
    if final.status != "done":
        return error_response(500, None, f"upscale {final.id} failed: {final.error}")
    return await ctx.renders.job_view(final.id, url)
