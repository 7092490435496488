"""The FastAPI app shared by the ingress and the route modules.

Failures become JSON errors here, in one place: a field and a message for
4xx, Retry-After for 503, and never a stack trace. Route modules reach the
ingress's state through the `context` dependency.
"""

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from actors.serve_calls import ServeModelCalls
from core.config import ClusterConfig
from core.errors import (
    AuthError,
    ModelOutputError,
    OverloadedError,
    ProviderError,
    QueueFull,
    QuotaExceeded,
    RequestError,
    StorageError,
)
from core.records import RunRegistry
from core.redact import public_message
from core.store import ArtifactStore
from core.tenants import current_request_id
from serve import gate
from serve.auth import Caller
from serve.gate import ApiGate
from serve.json_body import LARGE_BODY, gather_body, parse_json_body
from serve.links import LinkSigner
from serve.render_service import RenderService
from serve.request_metrics import RequestMetrics


@dataclass
class IngressContext:
    """What the routes share: the config, the store, the records and the render service."""

    config: ClusterConfig
    store: ArtifactStore
    registry: RunRegistry
    dispatcher: ServeModelCalls
    renders: RenderService
    app_name: str

    @property
    def links(self) -> LinkSigner:
        return self.renders.links


logger = logging.getLogger("ray.serve")
api = FastAPI(title="render-cluster", version="0.1.0")
api.add_middleware(ApiGate)
api.add_middleware(RequestMetrics)  # added last: outermost, counts the gate's answers


def error_response(
    status: int,
    field: str | None,
    message: str,
    headers: dict | None = None,
    request: Request | None = None,
):
    """A JSON error: the field to fix, the message, and the request's id."""
    body: dict = {"error": {"field": field, "message": public_message(message)}}
    body["request_id"] = request_id(request) if request is not None else current_request_id.get()
    return JSONResponse(status_code=status, content=body, headers=headers)


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


@api.exception_handler(RequestError)
async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    message = f"{exc.field}: {exc.message}"
    retry_after = getattr(exc, "retry_after_s", None)
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return error_response(exc.status_code, exc.field, message, headers, request)


@api.exception_handler(QuotaExceeded)
async def _quota(request: Request, exc: QuotaExceeded) -> JSONResponse:
    """429 naming the limit reached, with Retry-After."""
    headers = {"Retry-After": str(exc.retry_after_s)}
    return error_response(429, exc.limit, str(exc), headers, request)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if p != "body"]
        problems.append({"field": ".".join(loc) or "body", "message": err["msg"]})
    first = problems[0] if problems else {"field": "body", "message": "invalid request"}
    body = {
        "error": {"field": first["field"], "message": f"{first['field']}: {first['message']}"},
        "problems": problems,
        "request_id": request_id(request),
    }
    return JSONResponse(status_code=422, content=body)


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own answers (no such path, method not allowed) in the same error shape."""
    return error_response(exc.status_code, None, str(exc.detail), exc.headers, request)


@api.exception_handler(AuthError)
async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"}
    return error_response(401, "authorization", str(exc), headers, request)


@api.exception_handler(OverloadedError)
async def _overloaded(request: Request, exc: OverloadedError) -> JSONResponse:
    """503 (a model cannot take work now) or 429 (its job queue is full), with Retry-After."""
    field = "model" if isinstance(exc, QueueFull) else None
    headers = {"Retry-After": str(exc.retry_after_s)}
    return error_response(exc.status_code, field, str(exc), headers, request)


@api.exception_handler(StorageError)
async def _storage_error(request: Request, exc: StorageError) -> JSONResponse:
    """502 without the store's locations (they stay in the server log)."""
    logger.error("storage error (request %s): %s", request_id(request), exc)
    message = "the artifact store failed; retry later (the server log names the request id)"
    return error_response(502, None, message, request=request)


@api.exception_handler(ModelOutputError)
async def _model_output(request: Request, exc: ModelOutputError) -> JSONResponse:
    """500 that says what is wrong with the model's configuration (never a black image)."""
    logger.error("model output error (request %s): %s", request_id(request), exc)
    return error_response(exc.status_code, "model", str(exc), request=request)


@api.exception_handler(ProviderError)
async def _provider_error(request: Request, exc: ProviderError) -> JSONResponse:
    """A hosted model's provider failed: 502 (504 when it timed out), the reason in words."""
    return error_response(exc.status_code, None, str(exc), request=request)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error in ingress (request %s)", request_id(request))
    message = "internal error; the server log names the request id"
    return error_response(500, None, message, request=request)


class _JsonRequest(Request):
    """A request whose body is gathered chunk by chunk and, when large, parsed in a thread
    by `serve.json_body` (short holds of the GIL), so the event loop keeps answering."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            self._body = await gather_body(self.stream())
        return self._body

    async def json(self):
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                if len(body) > LARGE_BODY:
                    self._json = await asyncio.to_thread(parse_json_body, body)
                else:
                    self._json = json.loads(body)
            except ValueError as exc:
                if isinstance(exc, json.JSONDecodeError):
                    raise
                raise json.JSONDecodeError(str(exc), "", 0) from None
        return self._json


class JsonRoute(APIRoute):
    """The route class of every router: large JSON bodies parsed by `_JsonRequest`."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            return await handler(_JsonRequest(request.scope, request.receive))

        return route


def authorized(
    request: Request,
    authorization: str | None = Header(None),
    x_api_key: str | None = Header(None),
) -> None:
    """FastAPI dependency: a valid API key when keys are configured (`ApiGate` checked it)."""
    if not hasattr(request.state, "caller"):  # not behind the gate (a bare test app)
        keys = gate.SETTINGS.api_keys
        request.state.caller = keys.check(authorization, x_api_key) if keys else None
        request.state.tenant = request.state.caller.tenant if request.state.caller else None


def tenant_of(request: Request) -> str | None:
    """The caller's tenant; None when keys are off (everyone sees everything)."""
    return getattr(request.state, "tenant", None)


def caller_of(request: Request) -> Caller | None:
    return getattr(request.state, "caller", None)


_INSTALLED: dict[str, IngressContext] = {}


def install_context(ctx: IngressContext) -> None:
    """Make `ctx` what every route sees (the ingress calls this when it starts).

    Kept in this module, not only on `api.state`: Serve serves a pickled copy of the
    app, so the `api` the ingress class refers to need not be the app that answers.
    """
    _INSTALLED["context"] = ctx
    api.state.context = ctx


def context(request: Request) -> IngressContext:
    """FastAPI dependency: the ingress's shared state."""
    found = getattr(request.app.state, "context", None)
    return found if found is not None else _INSTALLED["context"]


Context = Annotated[IngressContext, Depends(context)]


def base_url(request: Request) -> str:
    """The URL clients reached us at (for shareable artifact links)."""
    return str(request.base_url).rstrip("/")
