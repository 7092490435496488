"""Review board: approvals (approve, reject, re-run a stage), jobs, campaigns, experiments.

Every action calls the API's own route function (`serve.routes.pipelines`,
`serve.routes.jobs`, `serve.routes.campaigns`), so the board and the API cannot drift:
same checks, same tenancy, same job handling.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from core.campaign.plan import manifest_key
from core.errors import NotFoundError, RequestError
from core.jobs.model import Job, JobStatus
from serve.idempotency import IdempotencyHold
from serve.routes import campaigns as campaigns_api
from serve.routes import experiments as experiments_api
from serve.routes import jobs as jobs_api
from serve.routes import pipelines as pipelines_api
from serve.ui import data, previews, stage_fields, thumbs
from serve.ui.pages import UiRoute, checked_form, ingress_context, off_loop, page, redirect

router = APIRouter(route_class=UiRoute, include_in_schema=False)


def _runner(request: Request):
    return pipelines_api.pipeline_runner(request, ingress_context(request))


@router.get("/ui/approvals")
async def approvals(request: Request):
    """Pipeline runs waiting at a gate, each with its stage images and the three actions."""
    ctx = ingress_context(request)
    runs = await off_loop(data.awaiting, ctx.registry, request.state.tenant)
    items = await off_loop(
        lambda: [(run, data.stage_rows(ctx.registry, run, ctx.config)) for run in runs]
    )
    return page(request, "approvals.html", items=items, thumb=thumbs.image_output)


@router.post("/ui/approvals/{run_id}/approve")
async def approve(run_id: str, request: Request):
    await checked_form(request)
    await pipelines_api.approve(run_id, request, ingress_context(request), _runner(request))
    return redirect(request, f"/ui/runs/{run_id}")


@router.post("/ui/approvals/{run_id}/reject")
async def reject(run_id: str, request: Request):
    form = await checked_form(request)
    body = pipelines_api.RejectBody(reason=form.get("reason", "")[:2000])
    await pipelines_api.reject(run_id, request, ingress_context(request), _runner(request), body)
    return redirect(request, f"/ui/runs/{run_id}")


@router.post("/ui/approvals/{run_id}/rerun")
async def rerun(run_id: str, request: Request):
    """A new run from one stage with the changed fields of that stage (typed by the stage's
    schema); earlier stages come from cache."""
    form = await checked_form(request)
    ctx = ingress_context(request)
    run = await ctx.renders.visible_record(run_id)
    stage = data.stage_of(run, form.get("stage", ""))
    fields = stage_fields.stage_fields(stage, data.stage_choices(ctx.config, stage))
    overrides = stage_fields.parse(fields, form)
    body = pipelines_api.RerunBody.model_validate({"stage": stage.name, "set": overrides})
    answer = await pipelines_api.rerun(
        run_id, body, request, ingress_context(request), _runner(request)
    )
    new_id = json.loads(answer.body)["id"] if isinstance(answer, JSONResponse) else answer["id"]
    return redirect(request, f"/ui/runs/{new_id}")


@router.get("/ui/jobs")
async def jobs_page(request: Request):
    """Running and recent jobs; the page polls `/ui/jobs.json` for live progress."""
    return page(request, "jobs.html", jobs=await _jobs(request, None))


@router.get("/ui/jobs.json")
async def jobs_json(request: Request, status: JobStatus | None = None):
    """What the jobs page polls: previews only of jobs running or just ended."""
    return {"jobs": await _jobs(request, status, previews.recent)}


async def _jobs(
    request: Request, status: str | None, with_preview: Callable[[Job], bool] = lambda job: True
) -> list[dict[str, Any]]:
    ctx = ingress_context(request)
    owner = request.state.tenant
    found = await off_loop(ctx.renders.jobs.jobs.page, status, None, owner, None, 50)
    notes = await off_loop(
        lambda: [
            previews.preview_note(ctx.store, job) if with_preview(job) else None
            for job in found.jobs
        ]
    )
    pairs = zip(found.jobs, notes, strict=True)
    return [jobs_api.job_view(job) | {"preview": note} for job, note in pairs]


@router.get("/ui/jobs/{job_id}/preview.png")
async def job_preview(job_id: str, request: Request):
    """A large job's downscaled preview of the rows finished so far (the caller's jobs only)."""
    ctx = ingress_context(request)
    job = await off_loop(ctx.renders.jobs.jobs.get, job_id, request.state.tenant)
    image = await off_loop(previews.preview_image, ctx.store, job)
    if image is None:
        raise NotFoundError("id", f"job {job_id} has no preview yet")
    return Response(image, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/ui/jobs/{job_id}/cancel")
async def cancel(job_id: str, request: Request):
    await checked_form(request)
    await jobs_api.cancel_job(job_id, ingress_context(request))
    return redirect(request, "/ui/jobs")


@router.get("/ui/campaigns/{name}")
async def campaign_page(name: str, request: Request):
    """Progress, the contact sheet (once written), failed and held-for-review items."""
    ctx = ingress_context(request)
    status = await campaigns_api.campaign_status(name, request, ctx)
    failed = await off_loop(
        ctx.registry.list, campaign=name, status="failed", owner=request.state.tenant, limit=200
    )
    return page(
        request,
        "campaign.html",
        name=name,
        status=status,
        failed=failed,
        thumb=thumbs.image_output,
    )


@router.get("/ui/campaigns/{name}/status.json")
async def campaign_status_json(name: str, request: Request):
    """The campaign's progress, which its page polls (the caller's campaigns only)."""
    return await campaigns_api.campaign_status(name, request, ingress_context(request))


@router.post("/ui/campaigns/{name}/report")
async def campaign_report(name: str, request: Request):
    """Write the contact sheet now (mid-campaign too) and open it through its signed link."""
    await checked_form(request)
    answer = await campaigns_api.campaign_report(name, request, ingress_context(request))
    return RedirectResponse(answer["report_url"], status_code=303)


@router.post("/ui/campaigns/{name}/retry")
async def campaign_retry(name: str, request: Request):
    """Retry the failed items: submit the campaign's saved manifest again (the API's own
    submission, which renders only what is not done, failures included)."""
    await checked_form(request)
    ctx = ingress_context(request)
    await campaigns_api.campaign_status(name, request, ctx)  # 404 unless the caller's
    manifest = await off_loop(ctx.store.get_bytes, manifest_key(name))
    no_key = IdempotencyHold(None, ctx.renders.jobs.jobs)  # a retry is never a replay
    answer = await campaigns_api.submit_campaign(json.loads(manifest), request, ctx, no_key)
    if isinstance(answer, JSONResponse) and answer.status_code >= 400:
        message = json.loads(answer.body)["error"]["message"]
        raise RequestError("campaign", message)
    return redirect(request, f"/ui/campaigns/{quote(name, safe='')}")


@router.get("/ui/experiments")
async def experiments(request: Request):
    """The caller's experiments (suite runs), newest first, each linking to its report."""
    ctx = ingress_context(request)
    found = await off_loop(experiments_api.experiments(ctx).list, 100)
    return page(request, "experiments.html", experiments=found)


@router.get("/ui/experiments/{experiment_id}")
async def experiment_report(experiment_id: str, request: Request):
    """An experiment's report: the models side by side, case by case (the caller's only)."""
    ctx = ingress_context(request)
    return HTMLResponse(await experiments_api.report(experiment_id, ctx, request.state.tenant))
