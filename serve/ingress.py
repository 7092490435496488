"""The HTTP API (FastAPI through `@serve.ingress`, CPU only).

Routes stay thin: they validate, dispatch and encode. Every failure becomes a
JSON error naming the field (4xx) or a 503 with Retry-After; never a stack
trace.
"""

import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from core.config import ClusterConfig, deployment_name
from core.config_file import config_from_dict
from core.errors import AuthError, OverloadedError, RequestError
from core.imaging import MEDIA_TYPES, encode_base64, encode_image
from core.schemas import ModelSummary, RenderRequestBody, RenderResponse
from core.validation import resolve_render
from serve.auth import ApiKeys
from serve.cluster_status import deployment_status
from serve.dispatch import Dispatcher

logger = logging.getLogger("ray.serve")
api = FastAPI(title="render-cluster", version="0.1.0")


def _error(status: int, field: str | None, message: str, headers: dict | None = None):
    body = {"error": {"field": field, "message": message}}
    return JSONResponse(status_code=status, content=body, headers=headers)


@api.exception_handler(RequestError)
async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
    return _error(exc.status_code, exc.field, f"{exc.field}: {exc.message}")


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
    return _error(401, "authorization", str(exc), {"WWW-Authenticate": "Bearer"})


@api.exception_handler(OverloadedError)
async def _overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
    return _error(503, None, str(exc), {"Retry-After": str(exc.retry_after_s)})


@api.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error in ingress")
    return _error(500, None, f"internal error ({type(exc).__name__}); see the server log")


def _wanted_format(accept: str | None) -> str | None:
    """The raw image format asked for in Accept, if any."""
    for fmt, media_type in MEDIA_TYPES.items():
        if accept and media_type in accept:
            return fmt
    return None


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=1000)
@serve.ingress(api)
class Ingress:
    """HTTP entry point: validates requests and dispatches them to model servers."""

    def __init__(self, config: dict[str, Any], model_handles: dict[str, DeploymentHandle]):
        self.config: ClusterConfig = config_from_dict(config, source="application args")
        self.keys = ApiKeys(self.config.auth)
        self.dispatcher = Dispatcher(model_handles)

    def _authorize(self, authorization: str | None, x_api_key: str | None) -> None:
        self.keys.check(authorization, x_api_key)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def models(
        self,
        authorization: str | None = Header(None),
        x_api_key: str | None = Header(None),
    ) -> dict[str, Any]:
        self._authorize(authorization, x_api_key)
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
            ).model_dump()
            for name, model in self.config.models.items()
        ]
        return {
            "models": summaries,
            "styles": self.config.styles,
            "default_style": self.config.default_style,
            "limits": self.config.limits.model_dump(),
        }

    @api.get("/v1/status")
    async def status(
        self,
        authorization: str | None = Header(None),
        x_api_key: str | None = Header(None),
    ) -> dict[str, Any]:
        self._authorize(authorization, x_api_key)
        names = {deployment_name(model): model for model in self.config.models}
        return deployment_status(self.dispatcher.in_flight, names)

    @api.post("/v1/renders", response_model=RenderResponse)
    async def render(
        self,
        body: RenderRequestBody,
        accept: str | None = Header(None),
        authorization: str | None = Header(None),
        x_api_key: str | None = Header(None),
    ) -> Any:
        self._authorize(authorization, x_api_key)
        started = time.perf_counter()
        resolved = resolve_render(body, self.config)
        result = await self.dispatcher.render(resolved.model_name, resolved.request)
        raw_format = _wanted_format(accept)
        fmt = raw_format or resolved.format
        encoded = encode_image(result.image, fmt)
        total = time.perf_counter() - started
        render_id = uuid.uuid4().hex
        if raw_format:
            headers = {"X-Render-Id": render_id, "X-Seed": str(result.seed)}
            return Response(content=encoded, media_type=MEDIA_TYPES[fmt], headers=headers)
        request = resolved.request
        return RenderResponse(
            id=render_id,
            seed=result.seed,
            model=resolved.model_name,
            mode=request.mode,
            width=request.width,
            height=request.height,
            format=fmt,
            timings={
                "total_s": round(total, 4),
                "compute_s": round(result.compute_s, 4),
                "queue_and_transfer_s": round(max(total - result.compute_s, 0.0), 4),
            },
            image_base64=encode_base64(encoded),
        )
