"""Health, readiness, models, status, artifacts and usage: the routes outside any product.

Plain functions over the ingress context (not methods of the Serve class), so the
whole API runs in-process in tests too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from core.config import deployment_name
from core.errors import AuthError, NotFoundError
from core.schemas import ModelSummary
from core.tenants import visible
from serve.api_app import (
    Context,
    IngressContext,
    JsonRoute,
    authorized,
    caller_of,
    error_response,
    tenant_of,
)
from serve.cluster_status import deployment_status
from serve.gate import SETTINGS
from serve.model_info import DIFFUSION_FAMILIES, loaded_pipelines
from serve.report_links import is_report, sign_report_links
from serve.responses import ANSWER, BINARY, ClusterStatus, ModelsAnswer
from serve.routes.renders import artifact_response

router = APIRouter(route_class=JsonRoute)
keyed = APIRouter(dependencies=[Depends(authorized)], route_class=JsonRoute)


class Health(BaseModel):
    status: str = Field(description="'ok' while the ingress answers.")


class Readiness(BaseModel):
    ready: bool
    not_running: dict[str, str] | None = Field(
        None,
        description="Model -> why it has no replica; with keys on, told only to a caller "
        "with a valid key (probes send none).",
    )


class Usage(BaseModel):
    tenant: str | None = Field(description="Tenant of the key (None: keys are off).")
    limits: dict[str, int | None] | None = Field(description="The key's limits.")
    usage: dict[str, int] | None = Field(
        description="requests_last_minute (every replica), concurrent_jobs, pixels_today."
    )


@router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(
    ctx: Context,
    authorization: str | None = Header(None),
    x_api_key: str | None = Header(None),
) -> JSONResponse:
    """200 when every model deployment runs a replica, else 503 (naming them to a caller
    with a valid key, or to anyone when keys are off). Open, as Kubernetes probes are."""
    problems = await ctx.renders.jobs.capacity.not_ready()
    body: dict[str, Any] = {"ready": not problems}
    if _may_see_details(authorization, x_api_key):
        body["not_running"] = problems
    return JSONResponse(status_code=503 if problems else 200, content=body)


def _may_see_details(authorization: str | None, x_api_key: str | None) -> bool:
    keys = SETTINGS.api_keys
    if keys is None or not keys.enabled:
        return True
    try:
        return keys.check(authorization, x_api_key) is not None
    except AuthError:
        return False


@keyed.get("/v1/models", response_model=ModelsAnswer, **ANSWER)
async def models(ctx: Context) -> dict[str, Any]:
    """The models, styles and request limits; for a diffusion model with a running replica,
    the pipelines that replica loaded, their dtype and where each component sits."""
    config = ctx.config
    deployments = await ctx.renders.jobs.capacity.deployments()
    diffusion = [
        name for name, model in config.models.items() if model.family in DIFFUSION_FAMILIES
    ]
    answers = await asyncio.gather(
        *(loaded_pipelines(ctx.app_name, name, deployments) for name in diffusion)
    )
    loaded = dict(zip(diffusion, answers, strict=True))
    summaries = [
        ModelSummary(
            name=name,
            source=model.source,
            family=model.family,
            native_resolution=model.native_resolution,
            latent_factor=model.latent_factor,
            default_steps=model.default_steps,
            default_guidance=model.default_guidance,
            gpus_per_replica=model.gpus_per_replica,
            min_replicas=model.autoscaling.min_replicas,
            max_replicas=model.autoscaling.max_replicas,
            loaded=loaded.get(name),
        ).model_dump(exclude_none=True)
        for name, model in config.models.items()
    ]
    return {
        "models": summaries,
        "styles": config.styles,
        "default_style": config.default_style,
        "limits": config.limits.model_dump(),
    }


@keyed.get("/v1/status", response_model=ClusterStatus, **ANSWER)
async def status(ctx: Context) -> dict[str, Any]:
    """Deployments and replicas (asked of the Serve controller off the event loop)."""
    names = {deployment_name(model): model for model in ctx.config.models}
    return await asyncio.to_thread(deployment_status, ctx.dispatcher.in_flight, names)


@keyed.get("/v1/usage")
async def usage(ctx: Context, request: Request) -> Usage:
    """The caller's tenant, its key's limits and what it used (this minute, today, now)."""
    caller = caller_of(request)
    if caller is None:
        return Usage(tenant=None, limits=None, usage=None)
    jobs = await asyncio.to_thread(ctx.renders.jobs.jobs.unfinished)
    pixels = await asyncio.to_thread(ctx.renders.pixels.today, caller.tenant)
    return Usage(
        tenant=caller.tenant,
        limits=caller.limits.model_dump(),
        usage={
            "requests_last_minute": await SETTINGS.rates.count(caller.key_hash),
            "concurrent_jobs": sum(1 for job in jobs if job.owner == caller.tenant),
            "pixels_today": pixels,
        },
    )


@router.get(
    "/v1/artifacts/{key:path}",
    response_class=Response,
    responses={
        200: {
            "description": "The artifact's bytes (media type from its name); a campaign's "
            "report.html with its relative links signed.",
            "content": {"application/octet-stream": BINARY, "text/html": {"schema": {}}},
        },
        307: {"description": "Redirect to a presigned S3 URL."},
    },
)
async def artifact(
    key: str,
    request: Request,
    ctx: Context,
    expires: str | None = Query(None, max_length=20, description="Signed link: expiry."),
    sig: str | None = Query(None, max_length=128, description="Signed link: signature."),
) -> Response:
    """Artifact bytes (local store) or a redirect to a presigned URL (S3).

    A signed link (from any answer of this API) works without a key until it expires;
    a tampered or expired one is a 403. Without a signature the caller's key must
    belong to the tenant owning the artifact (another's: 404). The gate (`ApiGate`)
    already required a key for an unsigned request.
    """
    if expires is not None or sig is not None:
        problem = await asyncio.to_thread(ctx.links.problem, key, expires or "", sig or "")
        if problem is not None:
            return error_response(403, "sig", f"the link is {problem}", request=request)
    elif tenant_of(request) is not None:
        owner = await asyncio.to_thread(ctx.links.owner, key, ctx.registry)
        if not visible(owner, tenant_of(request)):
            raise NotFoundError("key", f"no artifact {key!r}")
    if is_report(key):  # its relative links get signatures of their own, on S3 too
        until = int(expires) if expires is not None else None
        page = await asyncio.to_thread(_signed_report, ctx, key, until)
        return HTMLResponse(page)
    if ctx.config.storage.kind == "s3":
        url = await asyncio.to_thread(ctx.store.url, key)
        return RedirectResponse(url, status_code=307)
    return await artifact_response(ctx, key)


def _signed_report(ctx: IngressContext, key: str, expires: int | None) -> str:
    """The campaign report at `key` with its relative links signed until `expires`."""
    page = ctx.store.get_bytes(key).decode()
    return sign_report_links(page, key, lambda linked: ctx.links.query(linked, expires))
