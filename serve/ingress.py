"""The HTTP API (FastAPI through `@serve.ingress`, CPU only).

Routes stay thin: they validate, dispatch and encode. Every failure becomes a
JSON error naming the field (4xx) or a 503 with Retry-After; never a stack
trace.
"""

import mimetypes
from typing import Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from actors.serve_calls import ServeModelCalls
from core.config import APP_NAME, ClusterConfig, deployment_name
from core.config_file import config_from_dict
from core.imaging import MEDIA_TYPES, encode_base64
from core.schemas import ModelSummary, RenderRequestBody, RenderResponse
from core.store import open_store
from serve.api_app import IngressContext, api, authorized, error_response
from serve.auth import ApiKeys
from serve.cluster_status import deployment_status
from serve.render_service import RenderService
from serve.routes import campaigns, pipelines, runs, upscale

api.include_router(runs.router)
api.include_router(campaigns.router)
api.include_router(pipelines.router)
api.include_router(upscale.router)


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
        self.dispatcher = ServeModelCalls(APP_NAME, model_handles)
        self.store = open_store(self.config.storage)
        self.renders = RenderService(self.config, self.store, self.dispatcher.render)
        api.state.context = IngressContext(
            config=self.config,
            store=self.store,
            registry=self.renders.registry,
            dispatcher=self.dispatcher,
            renders=self.renders,
            app_name=APP_NAME,
        )

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
                return error_response(500, None, f"render {final.id} failed: {final.error}")
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
