"""`/v1/campaigns`: submit a manifest, follow its progress, get its report.

A manifest is validated in full (syntax, fields, the config, what the runner can
render) before anything starts; a bad one gets 422 with every problem listed.
A good one is saved beside the campaign and handed to a detached `CampaignRunner`
actor; submitting the same manifest again resumes it.
"""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError

from actors.campaign_runner import runner_alive, start_runner
from core.campaign import (
    Manifest,
    ManifestError,
    ProgressTracker,
    done_keys,
    layout,
    load_status,
    save_status,
    write_report,
)
from core.campaign.loop import DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_IN_FLIGHT, load_stats
from core.campaign.plan import manifest_key, plan_campaign
from core.campaign.submit import PlannedCampaign, plan_submission
from core.errors import NotFoundError, RequestError
from core.records import new_run_id
from core.tenants import current_tenant, visible
from serve.api_app import Context, IngressContext, JsonRoute, authorized, base_url, error_response
from serve.idempotency import Hold
from serve.links import campaign_owner_key
from serve.offload import off_loop
from serve.responses import ANSWER, CampaignReport, CampaignSubmitted, CampaignView

router = APIRouter(dependencies=[Depends(authorized)], route_class=JsonRoute)


class ManifestText(BaseModel):
    """A manifest as text, with how to run it."""

    model_config = ConfigDict(extra="forbid")

    manifest: str | dict[str, Any] = Field(description="Manifest text, or the manifest object.")
    format: Literal["yaml", "jsonl", "csv"] = Field("yaml", description="Format of the text.")
    max_in_flight: int = Field(
        DEFAULT_MAX_IN_FLIGHT, ge=1, le=10_000, description="Most renders in flight at once."
    )
    max_attempts: int = Field(
        DEFAULT_MAX_ATTEMPTS,
        ge=1,
        le=20,
        description="Failed attempts per render before giving up.",
    )
    callback_url: HttpUrl | None = Field(
        None, description="POSTed the campaign job's final state (signed) when it ends."
    )


def _submission(body: dict[str, Any]) -> tuple[str | dict[str, Any], str, ManifestText]:
    """The manifest (text or data), its format and the settings of a body."""
    if "manifest" not in body:
        return body, "yaml", ManifestText(manifest=body)
    try:
        submission = ManifestText.model_validate(body)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ManifestError("request body", problems) from None
    return submission.manifest, submission.format, submission


def _state(ctx: IngressContext, campaign: str) -> str | None:
    """The saved state of a campaign, None if it never ran."""
    try:
        return load_status(ctx.store, campaign).state
    except NotFoundError:
        return None


def _urls(ctx: IngressContext, campaign: str, root: str) -> dict[str, str]:
    return {
        "status_url": f"{root}/v1/campaigns/{campaign}",
        "report_url": ctx.links.url(layout.report_key(campaign), root),
        "csv_url": ctx.links.url(layout.summary_key(campaign), root),
    }


def _owner(ctx: IngressContext, campaign: str) -> str | None:
    """The tenant that submitted `campaign` first ('' when keys were off), None if none did."""
    try:
        return ctx.store.get_bytes(campaign_owner_key(campaign)).decode()
    except NotFoundError:
        return None


def _own(ctx: IngressContext, campaign: str) -> None:
    """404 unless the caller's tenant owns `campaign` (or keys are off)."""
    owner = _owner(ctx, campaign)
    tenant = current_tenant.get()
    if tenant is not None and owner != tenant:
        raise NotFoundError("name", f"no campaign {campaign!r}")


def _prepare(ctx: IngressContext, planned: PlannedCampaign) -> bool:
    """Save the manifest, its owner and its progress; False when another tenant owns the name."""
    name = planned.name
    tenant = current_tenant.get()
    ctx.store.put_if_absent(campaign_owner_key(name), (tenant or "").encode())  # first one wins
    if not visible(_owner(ctx, name) or None, tenant):
        return False
    ctx.store.put_bytes(manifest_key(name), planned.manifest_json.encode())
    keys = set(planned.job_keys)
    done = len(done_keys(ctx.store, name) & keys)
    save_status(ctx.store, ProgressTracker(name, len(keys), done=done).snapshot())
    return True


@router.post("/v1/campaigns", status_code=202, response_model=CampaignSubmitted, **ANSWER)
async def submit_campaign(
    body: Annotated[dict[str, Any], Body()],
    request: Request,
    ctx: Context,
    hold: Hold,
) -> dict[str, Any] | JSONResponse:
    """Validate a manifest and start (or resume) its campaign; 202 with the status URL."""
    claimed = await hold.claimed(body)
    if claimed is not None:
        job = await ctx.renders.jobs.get(claimed)
        name = str(job.request["campaign"])
        status = await asyncio.to_thread(load_status, ctx.store, name)
        return _submitted(request, name, job.id, status)
    try:
        source, fmt, settings = _submission(body)
        size = int(request.headers.get("content-length") or 0)
        planned = await off_loop(size, plan_submission, source, fmt, ctx.config)
    except ManifestError as exc:
        return JSONResponse(
            status_code=422,
            content={
                "error": {"field": "manifest", "message": str(exc)},
                "problems": exc.problems,
            },
        )
    name = planned.name
    if runner_alive(name) and await asyncio.to_thread(_state, ctx, name) == "running":
        return error_response(409, "campaign", f"campaign {name!r} is already running")
    if not await asyncio.to_thread(_prepare, ctx, planned):
        return error_response(409, "campaign", f"the name {name!r} is taken; choose another")
    try:
        await asyncio.to_thread(
            start_runner,
            ctx.config,
            planned.manifest_json,
            ctx.app_name,
            max_in_flight=settings.max_in_flight,
            max_attempts=settings.max_attempts,
        )
    except ValueError:  # another request started one a moment ago
        return error_response(409, "campaign", f"campaign {name!r} is already running")
    job_id = new_run_id()
    follow = {
        "campaign": name,
        "settings": {
            "max_in_flight": settings.max_in_flight,
            "max_attempts": settings.max_attempts,
        },
    }
    idempotency = None if hold.key is None else (hold.key, body)
    await ctx.renders.jobs.admit(
        "campaign", job_id, None, follow, None, _callback(body), idempotency
    )
    status = await asyncio.to_thread(load_status, ctx.store, name)
    return _submitted(request, name, job_id, status)


def _submitted(request: Request, name: str, job_id: str, status: Any) -> JSONResponse:
    """202 for a submitted campaign: its numbers, and where to follow it and its job."""
    root = base_url(request)
    content = {
        "campaign": name,
        "state": status.state,
        "total": status.total,
        "done": status.done,
        "status_url": f"{root}/v1/campaigns/{name}",
        "job_id": job_id,
        "job_url": f"{root}/v1/jobs/{job_id}",
    }
    headers = {"Location": f"/v1/jobs/{job_id}", "Retry-After": "1"}
    return JSONResponse(status_code=202, content=content, headers=headers)


def _callback(body: dict[str, Any]) -> str | None:
    """The `callback_url` of a submission, checked like every other URL field."""
    value = body.get("callback_url") if "manifest" in body else None
    if value is None:
        return None
    try:
        return str(CallbackUrl.model_validate({"callback_url": value}).callback_url)
    except ValidationError:
        raise RequestError("callback_url", "must be an http(s) URL") from None


class CallbackUrl(BaseModel):
    callback_url: HttpUrl


@router.get("/v1/campaigns/{name}", response_model=CampaignView, **ANSWER)
async def campaign_status(name: str, request: Request, ctx: Context) -> dict[str, Any]:
    """Done, failed, in flight, renders per minute and ETA; the report's URLs once finished."""
    await asyncio.to_thread(_own, ctx, name)
    progress = await asyncio.to_thread(load_status, ctx.store, name)
    view = progress.model_dump(mode="json")
    if progress.state == "running" and not runner_alive(name):
        view["state"] = "stopped"  # its runner died: submitting the manifest again resumes it
    stats = await asyncio.to_thread(load_stats, ctx.store, name)
    view["runner"] = stats.model_dump(mode="json", exclude={"campaign", "state"}) if stats else None
    urls = _urls(ctx, name, base_url(request))
    if progress.state != "finished":
        urls = {"status_url": urls["status_url"]}
    return view | urls


@router.post("/v1/campaigns/{name}/report", response_model=CampaignReport, **ANSWER)
async def campaign_report(name: str, request: Request, ctx: Context) -> dict[str, Any]:
    """Write the report now (mid-campaign too) from the saved manifest; return its URLs."""
    await asyncio.to_thread(_own, ctx, name)
    await asyncio.to_thread(_write_report, ctx, name)
    return {"campaign": name} | _urls(ctx, name, base_url(request))


def _write_report(ctx: IngressContext, name: str) -> None:
    try:
        data = ctx.store.get_bytes(manifest_key(name))
    except NotFoundError:
        raise NotFoundError("name", f"no campaign {name!r}") from None
    jobs = plan_campaign(Manifest.model_validate_json(data), ctx.config)
    write_report(ctx.store, name, jobs, registry=ctx.registry)
