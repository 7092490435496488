"""The HTTP API (FastAPI through `@serve.ingress`, CPU only).

Routes stay thin: they validate, dispatch and encode. Every failure becomes a
JSON error naming the field (4xx) or a 503 with Retry-After; never a stack
trace.
"""

import logging
import mimetypes
from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from core.config import ClusterConfig, deployment_name
from core.config_file import config_from_dict
from core.errors import AuthError, OverloadedError, RequestError, StorageError
from core.imaging import MEDIA_TYPES, encode_base64
from core.schemas import ModelSummary, RenderRequestBody, RenderResponse
from core.store import open_store
from serve.auth import ApiKeys
from serve.cluster_status import deployment_status
from serve.dispatch import Dispatcher
from serve.render_service import RenderService

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


@api.exception_handler(StorageError)
async def _storage_error(_: Request, exc: StorageError) -> JSONResponse:
    return _error(502, None, str(exc))


@api.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error in ingress")
    return _error(500, None, f"internal error ({type(exc).__name__}); see the server log")


def authorized(
    request: Request,
    authorization: str | None = Header(None),
    x_api_key: str | None = Header(None),
) -> None:
    """FastAPI dependency: a valid API key when keys are configured."""
    request.app.state.api_keys.check(authorization, x_api_key)


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
        api.state.api_keys = ApiKeys(self.config.auth)
        self.dispatcher = Dispatcher(model_handles)
        self.store = open_store(self.config.storage)
        self.renders = RenderService(self.config, self.store, self.dispatcher)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def models(self, _: None = Depends(authorized)) -> dict[str, Any]:
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
    async def status(self, _: None = Depends(authorized)) -> dict[str, Any]:
        names = {deployment_name(model): model for model in self.config.models}
        return deployment_status(self.dispatcher.in_flight, names)

    @api.post("/v1/renders", response_model=None)
    async def render(
        self,
        body: RenderRequestBody,
        request: Request,
        accept: str | None = Header(None),
        _: None = Depends(authorized),
    ) -> Any:
        raw_format = _wanted_format(accept)
        base_url = str(request.base_url).rstrip("/")
        if self.renders.is_large(body):
            record = self.renders.start_large(body)
            if not body.wait:
                view = await self.renders.job_view(record.id, base_url)
                return JSONResponse(status_code=202, content=view)
            final = await self.renders.jobs.wait(record.id)
            if final.status != "done":
                return _error(500, None, f"render {final.id} failed: {final.error}")
            if raw_format:
                return self._artifact_response(final.outputs["image"], final)
            return await self.renders.job_view(final.id, base_url)
        record, encoded, fmt = await self.renders.render_single(body, raw_format)
        if raw_format:
            headers = {"X-Render-Id": record.id, "X-Seed": str(record.seed)}
            return Response(content=encoded, media_type=MEDIA_TYPES[fmt], headers=headers)
        return RenderResponse(
            id=record.id,
            seed=record.seed,
            model=record.model,
            mode=record.params["mode"],
            width=record.params["width"],
            height=record.params["height"],
            format=fmt,
            timings=record.timings,
            url=self.store.url(record.outputs["image"], base_url=base_url),
            image_base64=encode_base64(encoded),
        )

    @api.get("/v1/renders/{render_id}")
    async def render_status(
        self, render_id: str, request: Request, _: None = Depends(authorized)
    ) -> dict[str, Any]:
        return await self.renders.job_view(render_id, str(request.base_url).rstrip("/"))

    @api.get("/v1/artifacts/{key:path}")
    async def artifact(self, key: str) -> Response:
        """Artifact bytes (local store), or a redirect to a presigned URL (S3)."""
        if self.config.storage.kind == "s3":
            return RedirectResponse(self.store.url(key), status_code=307)
        return self._artifact_response(key)

    def _artifact_response(self, key: str, record: Any = None) -> Response:
        stream = self.store.open(key)
        media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        headers = {"X-Render-Id": record.id, "X-Seed": str(record.seed)} if record else None
        return StreamingResponse(stream, media_type=media_type, headers=headers)

    @api.get("/v1/runs")
    async def runs(
        self,
        model: str | None = None,
        style: str | None = None,
        pipeline: str | None = None,
        campaign: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = Query(50, ge=1, le=1000),
        _: None = Depends(authorized),
    ) -> dict[str, Any]:
        records = self.renders.registry.list(
            model=model,
            style=style,
            pipeline=pipeline,
            campaign=campaign,
            status=status,
            since=since,
            until=until,
            limit=limit,
        )
        return {"runs": [r.model_dump(mode="json") for r in records]}

    @api.get("/v1/runs/{run_id}")
    async def run(self, run_id: str, _: None = Depends(authorized)) -> dict[str, Any]:
        return self.renders.registry.get(run_id).model_dump(mode="json")
