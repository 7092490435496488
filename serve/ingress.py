"""The HTTP API (FastAPI through `@serve.ingress`, CPU only).

Routes stay thin: they validate, dispatch and encode. Every failure becomes a
JSON error naming the field (4xx) or a 503 with Retry-After; never a stack
trace.
"""

from typing import Any

from fastapi import Depends
from fastapi.responses import JSONResponse, RedirectResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from actors.job_supervisor import ensure_supervisor
from actors.serve_calls import ServeModelCalls
from core.config import APP_NAME, ClusterConfig, deployment_name
from core.config_file import config_from_dict
from core.schemas import ModelSummary
from core.store import open_store
from serve.api_app import IngressContext, api, authorized
from serve.auth import ApiKeys
from serve.cluster_status import deployment_status
from serve.render_service import RenderService
from serve.routes import campaigns, jobs, pipelines, renders, runs, upscale
from serve.routes.renders import artifact_response

api.include_router(renders.router)
api.include_router(jobs.router)
api.include_router(runs.router)
api.include_router(campaigns.router)
api.include_router(pipelines.router)
api.include_router(upscale.router)


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
        ensure_supervisor(self.config, APP_NAME)
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

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """200 when every model deployment runs a replica; 503 naming those that do not."""
        problems = await self.renders.jobs.capacity.not_ready()
        body = {"ready": not problems, "not_running": problems}
        return JSONResponse(status_code=503 if problems else 200, content=body)

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

    @api.get("/v1/artifacts/{key:path}")
    async def artifact(self, key: str) -> Response:
        """Artifact bytes (local store), or a redirect to a presigned URL (S3)."""
        if self.config.storage.kind == "s3":
            return RedirectResponse(self.store.url(key), status_code=307)
        return artifact_response(api.state.context, key)
