"""The HTTP API (FastAPI through `@serve.ingress`, CPU only).

Routes stay thin: they validate, dispatch and encode. Every failure becomes a
JSON error naming the field (4xx) or a 503 with Retry-After; never a stack
trace.
"""

import threading
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from actors import ray_metrics
from actors.job_supervisor import ensure_supervisor
from actors.rate_limiter import rates_for
from actors.serve_calls import ServeModelCalls
from core.config import APP_NAME, ClusterConfig
from core.config_file import config_from_dict
from core.store import open_store
from serve import api_app, gate, offload, ui
from serve.api_app import IngressContext, api
from serve.auth import ApiKeys
from serve.render_service import RenderService
from serve.responses import ERRORS
from serve.routes import (
    campaigns,
    experiments,
    jobs,
    openai_images,
    pipelines,
    renders,
    runs,
    system,
    upscale,
)

for _routes in (
    system.router,
    system.keyed,
    renders.router,
    jobs.router,
    runs.router,
    campaigns.router,
    pipelines.router,
    upscale.router,
    experiments.router,
):
    api.include_router(_routes, responses=ERRORS)
api.include_router(ui.router)
api.include_router(openai_images.router)  # errors in OpenAI's shape (its own `responses`)


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=1000)
@serve.ingress(api)
class Ingress:
    """HTTP entry point: validates requests and dispatches them to model servers."""

    def __init__(self, config: dict[str, Any], model_handles: dict[str, DeploymentHandle]):
        self.config: ClusterConfig = config_from_dict(config, source="application args")
        ray_metrics.install()
        app_name = serve.get_replica_context().app_name or APP_NAME
        limits = self.config.limits
        gate.configure(ApiKeys(self.config.auth), limits.max_body_bytes, rates_for(app_name))
        self.dispatcher = ServeModelCalls(app_name, model_handles)
        self.store = open_store(self.config.storage)
        self.renders = RenderService(self.config, self.store, self.dispatcher.render, app_name)
        self.renders.links.secret()  # read (or made) now, not on the event loop later
        ensure_supervisor(self.config, app_name)
        threading.Thread(
            target=offload.warm, args=("core.campaign.submit",), name="offload", daemon=True
        ).start()
        api_app.install_context(
            IngressContext(
                config=self.config,
                store=self.store,
                registry=self.renders.registry,
                dispatcher=self.dispatcher,
                renders=self.renders,
                app_name=app_name,
            )
        )
