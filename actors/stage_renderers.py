"""`ServeStageRenderer`: renders pipeline stages on the running Serve application.

The `render_stage` a `PipelineRunner` uses on a cluster. A render stage is one
call to its model's deployment (looked up by name, like the tile router does);
a hires stage is a large-format job on a `TileRouter` actor of its own, which
streams the file to the job's `output_key` in the store and is killed after.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import ray
from ray import serve
from ray.serve.exceptions import BackPressureError

from actors.pipeline_state import StageJob, StageOutput
from actors.tile_router import TileRouter
from core.config import APP_NAME, StorageConfig, deployment_name
from core.errors import OverloadedError
from core.schemas import GenerateRequest, GenerateResult, LargeRenderResult

__all__ = ["ServeStageRenderer"]


class ServeStageRenderer:
    """Renders `StageJob`s through Serve handles and tile-router actors."""

    def __init__(
        self, storage: StorageConfig, app_name: str = APP_NAME, spool_dir: Path | None = None
    ):
        """`storage` must name the runner's store with an absolute path (routers open it)."""
        self.storage = storage
        self.app_name = app_name
        self.spool_dir = spool_dir or Path(tempfile.gettempdir()) / "render-cluster-spool"

    async def __call__(self, job: StageJob) -> StageOutput:
        if isinstance(job.request, GenerateRequest):
            return await self._render(job.model_name, job.request)
        return await self._hires(job)

    async def _render(self, model_name: str, request: GenerateRequest) -> StageOutput:
        handle = serve.get_deployment_handle(deployment_name(model_name), self.app_name)
        try:
            result: GenerateResult = await handle.render.remote(request)
        except BackPressureError:
            raise OverloadedError(model_name, retry_after_s=1) from None
        return StageOutput(
            image=result.image,
            timings={"compute_s": round(result.compute_s, 4)},
            metrics={"batch_size": result.batch_size},
        )

    async def _hires(self, job: StageJob) -> StageOutput:
        router = TileRouter.remote(
            self.app_name, self.storage.model_dump(mode="json"), str(self.spool_dir)
        )
        try:
            result: LargeRenderResult = await router.run.remote(job.request)
        finally:
            ray.kill(router, no_restart=True)
        return StageOutput(
            width=result.width,
            height=result.height,
            timings=result.timings,
            metrics=result.metrics(),
            typography=result.typography,
        )
