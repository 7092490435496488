"""Pipeline routes: list pipelines, start a run, show it, approve, reject and re-run it.

A run is a durable job (kind pipeline, the run's id) that the job supervisor
advances to its next approval gate or its end; at a gate nothing runs, and an
approval (even after a restart) hands the job back to the supervisor. A client
that disconnects (or asked not to wait) never cancels a run; `wait: true` polls
the job in the store. The ingress only validates, records and answers.
"""

import asyncio
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, JsonValue

from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import PipelineRequest, PipelineRunState
from actors.stage_renderers import ServeStageRenderer
from core.errors import NotFoundError, RequestError
from core.imaging import b64decode_strict
from core.records import RunRecord
from core.redact import public_message
from core.schemas import MAX_SEED
from core.tenants import current_tenant, visible
from core.typography.schema import TextBox
from serve.api_app import Context, IngressContext, JsonRoute, authorized, base_url
from serve.idempotency import Hold
from serve.responses import ANSWER, PipelineList, PipelineRunView, accepted_as

router = APIRouter(dependencies=[Depends(authorized)], route_class=JsonRoute)
MAX_TEXT = 100_000  # the bound of limits.max_prompt_chars; the runner checks the configured one


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PipelineRunBody(_Body):
    """`POST /v1/pipelines/{name}/runs`: what to render through the pipeline."""

    prompt: str = Field(..., max_length=MAX_TEXT, description="What to draw.")
    negative_prompt: str = Field("", max_length=MAX_TEXT, description="What to keep out.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed (random if unset).")
    reference: str | None = Field(None, description="Reference image, base64 (or a data URL).")
    mask: str | None = Field(None, description="Mask, base64 (white: repaint).")
    campaign: str | None = Field(None, max_length=200, description="Campaign the run belongs to.")
    text_boxes: list[TextBox] = Field(
        default_factory=list,
        description="Copy typeset into anchor boxes after the last stage, then gated.",
    )
    wait: bool = Field(False, description="Answer when the run stops (gate, end, failure).")
    callback_url: HttpUrl | None = Field(
        None, description="POSTed the run's job state (signed) when it ends."
    )


class ApproveBody(_Body):
    """`POST /v1/renders/{id}/approve`."""

    wait: bool = Field(False, description="Answer when the run stops again.")


class RejectBody(_Body):
    """`POST /v1/renders/{id}/reject`."""

    reason: str = Field(
        "", max_length=2000, description="Why the run was rejected (kept in its record)."
    )


class RerunBody(_Body):
    """`POST /v1/renders/{id}/rerun`: re-run from one stage with some of its fields changed."""

    stage: str = Field(
        ..., max_length=200, description="Stage to recompute from (earlier ones come from cache)."
    )
    overrides: dict[str, JsonValue] = Field(
        default_factory=dict, alias="set", description='Stage fields to change: {"steps": 40}.'
    )
    wait: bool = Field(False, description="Answer when the run stops (gate, end, failure).")


def pipeline_runner(request: Request, ctx: Context) -> PipelineRunner:
    """FastAPI dependency: this replica's pipeline runner, created on first use."""
    state = request.app.state
    if getattr(state, "pipeline_runner", None) is None:
        renderer = ServeStageRenderer(ctx.config.storage, ctx.app_name)
        state.pipeline_runner = PipelineRunner(ctx.config, ctx.store, renderer, ctx.registry)
    return state.pipeline_runner


Runner = Annotated[PipelineRunner, Depends(pipeline_runner)]


@router.get("/v1/pipelines", response_model=PipelineList, **ANSWER)
async def list_pipelines(ctx: Context) -> dict[str, Any]:
    """Every configured pipeline with its stages."""
    return {
        "pipelines": [
            {
                "name": name,
                "description": pipeline.description,
                "stages": [stage.model_dump(mode="json") for stage in pipeline.stages],
            }
            for name, pipeline in ctx.config.pipelines.items()
        ]
    }


@router.post(
    "/v1/pipelines/{name}/runs",
    response_model=PipelineRunView,
    responses=accepted_as(PipelineRunView, "The run"),
    **ANSWER,
)
async def start_run(
    name: str,
    body: PipelineRunBody,
    request: Request,
    ctx: Context,
    runner: Runner,
    hold: Hold,
) -> Any:
    """Start a run: 202 with its id, or with `wait` 200 once it stops."""
    if name not in ctx.config.pipelines:
        known = ", ".join(sorted(ctx.config.pipelines)) or "none configured"
        raise NotFoundError("name", f"no pipeline {name!r} (pipelines: {known})")
    key_body = {"pipeline": name, **body.model_dump(mode="json")}
    claimed = await hold.claimed(key_body)
    if claimed is not None:
        run = await ctx.renders.visible_record(claimed)
        return await _answer(run, body.wait, request, ctx)
    limit = ctx.config.limits.max_upload_bytes
    pipeline_request = PipelineRequest(
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        seed=body.seed,
        reference=_upload(body.reference, "reference", limit),
        mask=_upload(body.mask, "mask", limit),
        campaign=body.campaign,
        text_boxes=body.text_boxes,
    )
    run = await asyncio.to_thread(runner.start, name, pipeline_request)
    callback = None if body.callback_url is None else str(body.callback_url)
    idempotency = None if hold.key is None else (hold.key, key_body)
    await ctx.renders.jobs.admit(
        "pipeline", run.id, None, {"pipeline": name}, None, callback, idempotency
    )
    return await _answer(run, body.wait, request, ctx)


@router.get("/v1/pipelines/runs/{run_id}", response_model=PipelineRunView, **ANSWER)
async def get_run(run_id: str, request: Request, ctx: Context, runner: Runner) -> dict[str, Any]:
    """A pipeline run with every stage's status, cache hit or miss and artifact URL."""
    run = await asyncio.to_thread(_own_run, runner, run_id)
    return await asyncio.to_thread(run_view, run, request, ctx)


@router.post(
    "/v1/renders/{run_id}/approve",
    response_model=PipelineRunView,
    responses=accepted_as(PipelineRunView, "The run"),
    **ANSWER,
)
async def approve(
    run_id: str, request: Request, ctx: Context, runner: Runner, body: ApproveBody | None = None
) -> Any:
    """Pass the approval gate a run waits at and continue it (202, or 200 with `wait`)."""
    await asyncio.to_thread(_awaiting, runner, run_id)
    running = await asyncio.to_thread(runner.mark_approved, run_id)
    if await ctx.renders.jobs.find(run_id) is None:  # a run from before jobs existed
        await ctx.renders.jobs.admit("pipeline", run_id, None, {"pipeline": running.pipeline})
    else:
        await ctx.renders.jobs.resume(run_id)
    return await _answer(running, bool(body and body.wait), request, ctx)


@router.post("/v1/renders/{run_id}/reject", response_model=PipelineRunView, **ANSWER)
async def reject(
    run_id: str, request: Request, ctx: Context, runner: Runner, body: RejectBody | None = None
) -> dict[str, Any]:
    """End a run that waits for approval, with status rejected (its job: cancelled)."""
    await asyncio.to_thread(_own_run, runner, run_id)
    run = await asyncio.to_thread(runner.reject, run_id, body.reason if body else "")
    if await ctx.renders.jobs.find(run_id) is not None:
        await ctx.renders.jobs.cancel(run_id, code="rejected", message=str(run.error))
    return await asyncio.to_thread(run_view, run, request, ctx)


@router.post(
    "/v1/renders/{run_id}/rerun",
    response_model=PipelineRunView,
    responses=accepted_as(PipelineRunView, "The run"),
    **ANSWER,
)
async def rerun(
    run_id: str, body: RerunBody, request: Request, ctx: Context, runner: Runner
) -> Any:
    """Start a new run repeating `run_id` from one stage, with `set` applied to that stage."""
    await asyncio.to_thread(_own_run, runner, run_id)
    try:
        run = await asyncio.to_thread(runner.start_rerun, run_id, body.stage, body.overrides)
    except RequestError as exc:
        if exc.field != "overrides":
            raise
        raise RequestError("set", exc.message) from None
    await ctx.renders.jobs.admit("pipeline", run.id, None, {"pipeline": run.pipeline})
    return await _answer(run, body.wait, request, ctx)


def run_view(run: RunRecord, request: Request, ctx: IngressContext) -> dict[str, Any]:
    """The public JSON of a pipeline run: the run, then one entry per stage."""
    base = base_url(request)
    state = PipelineRunState.from_record(run)
    stages = []
    for index, stage in enumerate(state.stages):
        entry: dict[str, Any] = {
            "name": stage.name,
            "status": _pending_status(run.status, index == state.next_stage),
            "approval": stage.approval,
        }
        if stage.name in state.stage_runs:
            entry.update(_stage_view(ctx.registry.get(state.stage_runs[stage.name]), ctx, base))
        stages.append(entry)
    view: dict[str, Any] = {
        "id": run.id,
        "pipeline": run.pipeline,
        "status": run.status,
        "prompt": run.prompt,
        "negative_prompt": run.negative_prompt,
        "seed": run.seed,
        "campaign": run.campaign,
        "parent_id": run.parent_id,
        "rerun_from": state.rerun_from,
        "overrides": state.overrides,
        "created_at": run.created_at.isoformat(),
        "timings": run.timings,
        "metrics": run.metrics,
        "error": public_message(run.error),
        "stages": stages,
    }
    if run.status == "done":
        key = run.outputs["image"]
        view["result"] = {"key": key, "url": ctx.links.url(key, base)}
    return view


def _stage_view(record: RunRecord, ctx: IngressContext, base: str) -> dict[str, Any]:
    view: dict[str, Any] = {
        "status": record.status,
        "run_id": record.id,
        "cache": record.cache,
        "model": record.model,
        "params": record.params,
        "seed": record.seed,
        "timings": record.timings,
        "metrics": record.metrics,
        "error": public_message(record.error),
    }
    for name in ("image", "review_image"):
        if name in record.outputs:
            key = record.outputs[name]
            prefix = "" if name == "image" else "review_"
            view.update({f"{prefix}key": key, f"{prefix}url": ctx.links.url(key, base)})
    if record.typography is not None:
        view["typography"] = record.typography
    return view


def _pending_status(run_status: str, is_next: bool) -> str:
    """Status of a stage without a record: running, pending, or skipped (run is over)."""
    if run_status == "running":
        return "running" if is_next else "pending"
    return "pending" if run_status == "awaiting_approval" else "skipped"


def _own_run(runner: PipelineRunner, run_id: str) -> RunRecord:
    """The pipeline run when the caller's tenant owns it (another tenant's: 404)."""
    run = runner.pipeline_run(run_id)
    if not visible(run.owner, current_tenant.get()):
        raise NotFoundError("id", f"no run {run_id!r}")
    return run


def _awaiting(runner: PipelineRunner, run_id: str) -> RunRecord:
    run = _own_run(runner, run_id)
    if run.status != "awaiting_approval":
        raise RequestError("id", f"run {run_id} is {run.status}, not awaiting approval")
    return run


def _upload(text: str | None, field: str, max_bytes: int) -> bytes | None:
    """Bytes of a base64 upload; the runner checks the image itself and its pixel limit."""
    if text is None:
        return None
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) * 3 // 4 > max_bytes + 3:
        raise RequestError(field, f"upload is larger than the limit of {max_bytes} bytes")
    try:
        return b64decode_strict(text)
    except (binascii.Error, ValueError):
        raise RequestError(field, "is not valid base64") from None


async def _answer(run: RunRecord, wait: bool, request: Request, ctx: IngressContext) -> Any:
    """202 with the run now, or (with `wait`) 200 once its job stops at a gate or ends."""
    if not wait:
        content = await asyncio.to_thread(run_view, run, request, ctx)
        headers = {"Location": f"/v1/jobs/{run.id}", "Retry-After": "1"}
        return JSONResponse(status_code=202, content=content, headers=headers)
    await ctx.renders.jobs.wait(run.id)
    final = await asyncio.to_thread(ctx.registry.get, run.id)
    return await asyncio.to_thread(run_view, final, request, ctx)
