"""The FastAPI app shared by the ingress and the route modules.

Failures become JSON errors here, in one place: a field and a message for
4xx, Retry-After for 503, and never a stack trace. Route modules reach the
ingress's state through the `context` dependency.
"""

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from actors.serve_calls import ServeModelCalls
from core.config import ClusterConfig
from core.errors import (
    AuthError,
    OverloadedError,
    ProviderError,
    QueueFull,
    RequestError,
    StorageError,
)
from core.records import RunRegistry
from core.store import ArtifactStore
from serve.render_service import RenderService


@dataclass
class IngressContext:
    """What the routes share: the config, the store, the records and the render service."""

    config: ClusterConfig
    store: ArtifactStore
    registry: RunRegistry
    dispatcher: ServeModelCalls
    renders: RenderService
    app_name: str


logger = logging.getLogger("ray.serve")
api = FastAPI(title="render-cluster", version="0.1.0")


def error_response(status: int, field: str | None, message: str, headers: dict | None = None):
    body = {"error": {"field": field, "message": message}}
    return JSONResponse(status_code=status, content=body, headers=headers)


@api.exception_handler(RequestError)
async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
    return error_response(exc.status_code, exc.field, f"{exc.field}: {exc.message}")


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if p != "body"]
        problems.append({"field": ".".join(loc) or "body", "message": err["msg"]})
    first = problems[0] if problems else {"field": "body", "message": "invalid request"}
    body = {
        "error": {"field": first["field"], "message": f"{first['field']}: {first['message']}"},
        "problems": problems,
    }
    return JSONResponse(status_code=422, content=body)


@api.exception_handler(AuthError)
async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
    return error_response(401, "authorization", str(exc), {"WWW-Authenticate": "Bearer"})


@api.exception_handler(OverloadedError)
async def _overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
    """503 (a model cannot take work now) or 429 (its job queue is full), with Retry-After."""
    field = "model" if isinstance(exc, QueueFull) else None
    headers = {"Retry-After": str(exc.retry_after_s)}
    return error_response(exc.status_code, field, str(exc), headers)


@api.exception_handler(StorageError)
async def _storage_error(_: Request, exc: StorageError) -> JSONResponse:
    return error_response(502, None, str(exc))


@api.exception_handler(ProviderError)
async def _provider_error(_: Request, exc: ProviderError) -> JSONResponse:
    """A hosted model's provider failed: 502 (504 when it timed out), the reason in words."""
    return error_response(exc.status_code, None, str(exc))


@api.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error in ingress")
    return error_response(500, None, f"internal error ({type(exc).__name__}); see the server log")


def authorized(
    request: Request,
    authorization: str | None = Header(None),
    x_api_key: str | None = Header(None),
) -> None:
    """FastAPI dependency: a valid API key when keys are configured."""
    request.app.state.api_keys.check(authorization, x_api_key)


def context(request: Request) -> IngressContext:
    """FastAPI dependency: the ingress's shared state."""
    return request.app.state.context


Context = Annotated[IngressContext, Depends(context)]


def base_url(request: Request) -> str:
    """The URL clients reached us at (for shareable artifact links)."""
    return str(request.base_url).rstrip("/")
