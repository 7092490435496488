"""OpenAI's Images API, so the official `openai` client works with `base_url` at the cluster.

`POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart) render
every image as one `RenderRequestBody` through `RenderService.render_single`, the
render path of `/v1/renders`: `n` images are `n` renders with seeds seed, seed+1, ...
(each its own run record, owned by the caller's tenant), and a `url` is the same
signed, expiring artifact link `/v1/renders` answers. A size that would be a
large-format render is refused (422 naming `size`): it belongs to `/v1/renders`,
which runs it as a job. The key arrives as `Authorization: Bearer <key>`, which the
gate already reads.

Errors on these two paths, and only these, are in OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`) with the statuses the rest of the
API uses: `OpenAIErrorShape` rewrites the answers of the gate, the routes and the
app's exception handlers there, so there is one source of every error and one
translation of it.
"""

import asyncio
import json
import logging
import secrets
import time
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.config import ClusterConfig
from core.edit_inputs import edit_inputs
from core.errors import RequestError
from core.imaging import encode_base64
from core.records import RunRecord
from core.render_records import RecordLabels
from core.schemas import MAX_SEED, RenderRequestBody
from serve.api_app import Context, IngressContext, JsonRoute, api, authorized, base_url

__all__ = ["MAX_IMAGES", "ImagesResponse", "OpenAIErrorShape", "openai_error", "router"]

logger = logging.getLogger("ray.serve")

MAX_IMAGES = 4
"""The most images one request may ask for (`n`)."""
PATHS = frozenset({"/v1/images/generations", "/v1/images/edits"})
SIZE_PATTERN = r"^(auto|[0-9]{1,6}x[0-9]{1,6})$"
SIZE_DOC = "'WxH' in pixels, or 'auto'"
ResponseFormat = Literal["url", "b64_json"]
OutputFormat = Literal["png", "jpeg", "webp"]


class OpenAIError(BaseModel):
    message: str = Field(description="What went wrong, in words (no paths or tracebacks).")
    type: str = Field(
        description="invalid_request_error (4xx), rate_limit_error (429), server_error (5xx)."
    )
    param: str | None = Field(description="The request field to fix (None: not one field).")
    code: str | None = Field(description="invalid_api_key, rate_limit_exceeded, overloaded, ...")


class OpenAIErrorBody(BaseModel):
    """Every 4xx and 5xx answer of `/v1/images/*` (OpenAI's error shape)."""

    error: OpenAIError


ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": OpenAIErrorBody, "description": "The request cannot be served as sent."},
    "5XX": {"model": OpenAIErrorBody, "description": "The cluster failed or is busy; retry later."},
}


class ImageGenerationRequest(BaseModel):
    """`POST /v1/images/generations`: OpenAI's fields (and `seed`, which is ours)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    prompt: str = Field(..., min_length=1, description="What to draw.")
    model: str | None = Field(
        None,
        description="A model or a style of the cluster config (GET /v1/models); "
        "default: the default style.",
    )
    n: int | None = Field(
        None, ge=1, le=MAX_IMAGES, description="How many images (default 1); seeds seed, seed+1."
    )
    size: str | None = Field(
        None, pattern=SIZE_PATTERN, description=f"{SIZE_DOC} (the model's native size, default)."
    )
    response_format: ResponseFormat | None = Field(
        None, description="'url' (default): a signed, expiring link; 'b64_json': the bytes."
    )
    output_format: OutputFormat | None = Field(None, description="Encoding (default png).")
    user: str | None = Field(
        None, max_length=256, description="Your end user's id, kept in each run record's params."
    )
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED - MAX_IMAGES, description="Seed of the first image (random)."
    )


class ImageData(BaseModel):
    """One image: `url` or `b64_json`, as `response_format` asked."""

    url: str | None = Field(None, description="Signed, expiring link to the image.")
    b64_json: str | None = Field(None, description="The encoded image, base64.")
    revised_prompt: str | None = Field(
        None, description="The prompt a hosted model says it drew (only when it returned one)."
    )


class ImagesResponse(BaseModel):
    """OpenAI's `ImagesResponse`: when, and the images in seed order."""

    created: int = Field(description="Unix time (seconds) of the answer.")
    data: list[ImageData]


router = APIRouter(dependencies=[Depends(authorized)], route_class=JsonRoute)
ANSWER: dict[str, Any] = {
    "response_model": ImagesResponse,
    "response_model_exclude_none": True,
    "responses": ERRORS,
}


@router.post("/v1/images/generations", **ANSWER)
async def generations(
    body: ImageGenerationRequest, request: Request, ctx: Context
) -> ImagesResponse:
    """Render `n` images for a prompt (OpenAI's `images.generate`)."""
    fields = {"prompt": body.prompt, "format": body.output_format or "png"}
    fields |= _route(ctx.config, body.model) | _size(body.size, ctx.config)
    return await _images(
        ctx, request, fields, (body.n or 1, body.seed), body.response_format, body.user
    )


@router.post("/v1/images/edits", **ANSWER)
async def edits(
    request: Request,
    ctx: Context,
    image: Annotated[UploadFile, File(description="PNG, JPEG or WebP to edit (one file).")],
    prompt: Annotated[str, Form(min_length=1, description="What the edited image shows.")],
    mask: Annotated[
        UploadFile | None,
        File(description="The image's size; transparent (alpha 0) pixels are the area to edit."),
    ] = None,
    model: Annotated[str | None, Form(description="A model or a style of the config.")] = None,
    n: Annotated[int | None, Form(ge=1, le=MAX_IMAGES, description="How many images.")] = None,
    size: Annotated[
        str | None, Form(pattern=SIZE_PATTERN, description=f"{SIZE_DOC} (default: the image's).")
    ] = None,
    response_format: Annotated[ResponseFormat | None, Form(description="url or b64_json.")] = None,
    output_format: Annotated[OutputFormat | None, Form(description="Encoding (png).")] = None,
    user: Annotated[str | None, Form(max_length=256, description="End user's id.")] = None,
    seed: Annotated[
        int | None, Form(ge=0, le=MAX_SEED - MAX_IMAGES, description="Seed of the first image.")
    ] = None,
) -> ImagesResponse:
    """Edit an image where the mask (or the image) is transparent (OpenAI's `images.edit`)."""
    limits = ctx.config.limits
    uploads = [await _upload(image, "image", limits.max_upload_bytes)]
    uploads.append(None if mask is None else await _upload(mask, "mask", limits.max_upload_bytes))
    wanted = _size(size, ctx.config)  # checked before any image is made at that size
    fitted = await asyncio.to_thread(
        edit_inputs,
        uploads[0],
        uploads[1],
        (wanted["width"], wanted["height"]) if wanted else None,
        limits.max_upload_bytes,
        limits.max_upload_pixels,
    )
    fields: dict[str, Any] = {"prompt": prompt, "format": output_format or "png"}
    fields |= _route(ctx.config, model) | {"width": fitted.width, "height": fitted.height}
    fields |= {"init_image": fitted.init_image, "mask": fitted.mask}
    return await _images(ctx, request, fields, (n or 1, seed), response_format, user)


async def _upload(upload: UploadFile, field: str, limit: int) -> bytes:
    """An uploaded file's bytes (a spooled file is read in a thread), refused past `limit`."""
    if upload.size is not None and upload.size > limit:
        raise RequestError(field, f"upload is {upload.size} bytes, over the limit of {limit} bytes")
    return await upload.read()


def _route(config: ClusterConfig, name: str | None) -> dict[str, str]:
    """OpenAI's `model` names a model or a style here; absent: the default style."""
    if name is None:
        return {}
    if name in config.models:
        return {"model": name}
    if name in config.styles:
        return {"style": name}
    known = ", ".join(sorted({*config.models, *config.styles}))
    raise RequestError("model", f"no model or style {name!r} (known: {known}); see /v1/models")


def _size(size: str | None, config: ClusterConfig) -> dict[str, int]:
    """'WxH' as width and height, within the config's limits; None or 'auto': the default."""
    if size is None or size == "auto":
        return {}
    width, height = (int(side) for side in size.partition("x")[::2])
    limits = config.limits
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise RequestError(
            "size",
            f"{size} is over the limits of {limits.max_width}x{limits.max_height} and "
            f"{limits.max_pixels} pixels",
        )
    return {"width": width, "height": height}


def _body(fields: dict[str, Any]) -> RenderRequestBody:
    try:
        return RenderRequestBody(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise RequestError(field, first["msg"]) from None


async def _images(
    ctx: IngressContext,
    request: Request,
    fields: dict[str, Any],
    count_and_seed: tuple[int, int | None],
    response_format: ResponseFormat | None,
    user: str | None,
) -> ImagesResponse:
    """`n` one-call renders on the render path, seeds seed..seed+n-1, in seed order."""
    n, seed = count_and_seed
    first = seed if seed is not None else secrets.randbelow(MAX_SEED - MAX_IMAGES)
    bodies = [_body(fields | {"seed": first + i}) for i in range(n)]
    if ctx.renders.is_large(bodies[0]):
        width, height = bodies[0].width, bodies[0].height
        raise RequestError(
            "size",
            f"{width}x{height} is over what one model pass renders here; a large-format "
            "render runs as a job: send it to POST /v1/renders",
        )
    labels = RecordLabels(params={"user": user} if user is not None else {})
    outcomes = await ctx.renders.render_several(bodies, labels)
    link_base = base_url(request)
    data = [
        await _image_data(ctx, record, encoded, response_format, link_base)
        for record, encoded, _fmt in outcomes
    ]
    return ImagesResponse(created=int(time.time()), data=data)


async def _image_data(
    ctx: IngressContext,
    record: RunRecord,
    encoded: bytes,
    response_format: ResponseFormat | None,
    link_base: str,
) -> ImageData:
    revised = record.provider.revised_prompt if record.provider is not None else None
    if response_format == "b64_json":
        text = await asyncio.to_thread(encode_base64, encoded)
        return ImageData(b64_json=text, revised_prompt=revised)
    return ImageData(url=ctx.links.url(record.outputs["image"], link_base), revised_prompt=revised)


# How this API's error fields read in OpenAI's request (None: not a request field).
PARAMS: dict[str, str | None] = {
    "width": "size",
    "height": "size",
    "init_image": "image",
    "style": "model",
    "format": "output_format",
    "body": None,
    "authorization": None,
}
KINDS: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "overloaded"),
    504: ("server_error", "upstream_timeout"),
}


def openai_error(status: int, raw: bytes) -> dict[str, Any]:
    """This API's JSON error (`{"error": {"field", "message"}, ...}`) in OpenAI's shape."""
    try:
        found = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        found = None
    found = found if isinstance(found, dict) else {}
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    message = str(found.get("message") or phrase)
    field = found.get("field")
    field = field if isinstance(field, str) else None
    kind, code = KINDS.get(status, ("invalid_request_error", None))
    if status >= 500 and status not in KINDS:
        kind = "server_error"
    param = PARAMS.get(field, field) if field is not None else None
    if status in (401, 429) or status >= 500:
        param = None
    elif param is not None and param != field:
        message = f"{param}: {message}"  # "size: width: must be a multiple of 8, ..."
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


INTERNAL = json.dumps(
    {"error": {"message": "internal error; the server log names the request id"}}
).encode()


def _json_reply(status: int, body: dict[str, Any], headers: list) -> list[dict[str, Any]]:
    raw = json.dumps(body).encode()
    kept = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"content-type")]
    kept += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    start = {"type": "http.response.start", "status": status, "headers": kept}
    return [start, {"type": "http.response.body", "body": raw}]


class OpenAIErrorShape:
    """Pure ASGI middleware around the gate: on `/v1/images/*`, every error answer (the
    gate's 401/413/429, a route's, a handler's, an unexpected 500) in OpenAI's shape.
    Other paths, and every answer under 400, pass untouched (never buffered)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _route_path(scope) not in PATHS:
            return await self.app(scope, receive, send)
        held: dict[str, Any] = {}

        async def reshape(message):
            if message["type"] == "http.response.start":
                held["started"] = True
                if message["status"] >= 400:
                    held["error"], held["body"] = message, []
                    return
            if "error" not in held or message["type"] != "http.response.body":
                return await send(message)
            held["body"].append(message.get("body", b""))
            if not message.get("more_body", False):
                start = held["error"]
                body = openai_error(start["status"], b"".join(held["body"]))
                for reply in _json_reply(start["status"], body, list(start.get("headers", []))):
                    await send(reply)

        try:
            await self.app(scope, receive, reshape)
        except Exception:
            if held.get("started"):
                raise
            request_id = scope.get("state", {}).get("request_id")
            logger.exception("unhandled error in the Images API (request %s)", request_id)
            body = openai_error(500, INTERNAL)
            headers = [(b"x-request-id", str(request_id).encode())] if request_id else []
            for reply in _json_reply(500, body, headers):
                await send(reply)


def _route_path(scope) -> str:
    """The path the routes match: without the application's route prefix (`root_path`)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


# Outside the gate (added after it), so the gate's own refusals are reshaped too.
api.add_middleware(OpenAIErrorShape)
