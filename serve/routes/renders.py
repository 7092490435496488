"""`/v1/renders`: one-call renders answered at once, large renders admitted as jobs.

A large render is a durable job: `"wait": false` answers 202 with `Location` and
`Retry-After` at once; `"wait": true` polls the job in the store, so a client that
disconnects stops only its own wait. An `Idempotency-Key` makes a retried POST
return the same job (or the same render) instead of starting another.
"""

import asyncio
import mimetypes
import secrets
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from actors.render_calls import gate_failure
from core.errors import RequestError
from core.imaging import MEDIA_TYPES, encode_base64
from core.jobs.model import Job
from core.records import RunRecord
from core.schemas import MAX_RENDER_IMAGES, MAX_SEED, RenderRequestBody, RenderResponse
from serve.api_app import Context, IngressContext, JsonRoute, authorized, base_url, error_response
from serve.idempotency import Hold
from serve.responses import ANSWER, BINARY, RenderAnswer, RenderView, accepted_as

router = APIRouter(dependencies=[Depends(authorized)], route_class=JsonRoute)


def wanted_format(accept: str | None) -> str | None:
    """The raw image format asked for in Accept, if any."""
    for fmt, media_type in MEDIA_TYPES.items():
        if accept and media_type in accept:
            return fmt
    return None


def accepted(content: dict[str, Any], job_id: str) -> JSONResponse:
    """202 for a job: where to follow it, and when to look again."""
    headers = {"Location": f"/v1/jobs/{job_id}", "Retry-After": "1"}
    return JSONResponse(status_code=202, content=content, headers=headers)


@router.post(
    "/v1/renders",
    response_model=RenderAnswer,
    responses={
        200: {"content": {media_type: BINARY for media_type in MEDIA_TYPES.values()}},
        **accepted_as(RenderView, "A large render's job"),
    },
    **ANSWER,
)
async def render(
    body: RenderRequestBody,
    request: Request,
    ctx: Context,
    hold: Hold,
    accept: str | None = Header(None),
) -> Any:
    """Render one image now (or `n` of them), or admit a large render as a job."""
    raw_format = wanted_format(accept)
    if body.n > 1:
        return await _several(ctx, body, request, raw_format, hold.key)
    key_body = body.model_dump(mode="json")
    claimed = await hold.claimed(key_body)
    if ctx.renders.is_large(body):
        return await _large(ctx, body, request, raw_format, claimed, (hold.key, key_body))
    if claimed is not None:
        record = await ctx.renders.visible_record(claimed)
        encoded = await asyncio.to_thread(ctx.store.get_bytes, record.outputs["image"])
        fmt = str(record.params["format"])
    else:
        async with hold.kept():  # a render longer than a hold's life keeps its key
            record, encoded, fmt = await ctx.renders.render_single(body, raw_format)
        await ctx.renders.jobs.claim(hold.key, key_body, record.id)
    if raw_format:
        headers = {"X-Render-Id": record.id, "X-Seed": str(record.seed)}
        return Response(content=encoded, media_type=MEDIA_TYPES[fmt], headers=headers)
    return _answer(ctx, request, record, encoded, fmt)


async def _several(
    ctx: IngressContext,
    body: RenderRequestBody,
    request: Request,
    raw_format: str | None,
    idempotency_key: str | None,
) -> RenderResponse:
    """`n` one-pass renders of seeds seed..seed+n-1, sent together (the model batches
    them); the first image's answer, listing every image in `images`."""
    if raw_format:
        raise RequestError("n", "n > 1 answers JSON; ask Accept: image/* for one image")
    if idempotency_key is not None:
        raise RequestError("n", "an Idempotency-Key replays one render; send n 1 with it")
    if ctx.renders.is_large(body):
        raise RequestError("n", "a large-format render makes one image; send n 1")
    first = body.seed
    if first is None:
        first = secrets.randbelow(MAX_SEED - MAX_RENDER_IMAGES)
    if first + body.n - 1 > MAX_SEED:
        raise RequestError("seed", f"with n {body.n} must be at most {MAX_SEED - body.n + 1}")
    bodies = [body.model_copy(update={"seed": first + i, "n": 1}) for i in range(body.n)]
    outcomes = await ctx.renders.render_several(bodies)
    answers = [_answer(ctx, request, *outcome) for outcome in outcomes]
    return answers[0].model_copy(update={"images": answers})


def _answer(
    ctx: IngressContext, request: Request, record: RunRecord, encoded: bytes, fmt: str
) -> RenderResponse:
    """The JSON answer of one finished one-pass render."""
    return RenderResponse(
        id=record.id,
        seed=record.seed,
        model=record.model,
        mode=record.params["mode"],
        width=record.params["width"],
        height=record.params["height"],
        format=fmt,
        timings=record.timings,
        url=ctx.links.url(record.outputs["image"], base_url(request)),
        image_base64=encode_base64(encoded),
    )


async def _large(
    ctx: IngressContext,
    body: RenderRequestBody,
    request: Request,
    raw_format: str | None,
    claimed: str | None,
    idempotency: tuple[str | None, dict],
) -> Any:
    if claimed is not None:
        job = await ctx.renders.jobs.get(claimed)
    else:
        key = idempotency if idempotency[0] is not None else None
        job = await ctx.renders.start_large(body, key)
    if not body.wait:
        return accepted(await ctx.renders.job_view(job.id, base_url(request)), job.id)
    final = await ctx.renders.jobs.wait(job.id)
    return await finished(ctx, final, request, raw_format)


async def finished(
    ctx: IngressContext, job: Job, request: Request, raw_format: str | None = None
) -> Any:
    """The answer for a job that ended: its result, 422 for a failed gate, 500 otherwise."""
    record = await asyncio.to_thread(ctx.registry.get, job.id)
    if job.status != "done":
        failed = gate_failure(record)
        if failed is not None:
            raise failed
        reason = job.error.message if job.error else record.error
        return error_response(500, None, f"job {job.id} {job.status}: {reason}")
    if raw_format:
        return await artifact_response(ctx, record.outputs["image"], record)
    return await ctx.renders.job_view(job.id, base_url(request))


@router.get("/v1/renders/{render_id}", response_model=RenderView, **ANSWER)
async def render_status(render_id: str, request: Request, ctx: Context) -> dict[str, Any]:
    """A render's (or a large render job's) status, progress and result."""
    return await ctx.renders.job_view(render_id, base_url(request))


async def artifact_response(
    ctx: IngressContext, key: str, record: RunRecord | None = None
) -> Response:
    """The artifact's bytes, streamed (off the event loop); the render's id and seed."""
    stream = await asyncio.to_thread(ctx.store.open, key)
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    headers = {"X-Render-Id": record.id, "X-Seed": str(record.seed)} if record else None
    return StreamingResponse(stream, media_type=media_type, headers=headers)
