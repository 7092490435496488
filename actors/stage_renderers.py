"""`ServeStageRenderer`: renders pipeline stages on the running Serve application.

The `render_stage` a `PipelineRunner` uses on a cluster. A render stage is one
model call and a hires stage a large-format job on a tile router of its own,
both through `actors.render_calls.ModelCalls` (the path every render takes); the
router streams the file to the job's `output_key` in the store.
"""

from __future__ import annotations

from pathlib import Path

from actors.pipeline_state import StageJob, StageOutput
from actors.render_calls import ModelCalls, ServeTarget, default_spool_dir
from core.config import APP_NAME, StorageConfig
from core.schemas import GenerateRequest

__all__ = ["ServeStageRenderer"]


class ServeStageRenderer:
    """Renders `StageJob`s through Serve handles and tile-router actors."""

    def __init__(
        self, storage: StorageConfig, app_name: str = APP_NAME, spool_dir: Path | None = None
    ):
        """`storage` must name the runner's store with an absolute path (routers open it)."""
        self.calls = ModelCalls(ServeTarget(storage, app_name, spool_dir or default_spool_dir()))

    async def __call__(self, job: StageJob) -> StageOutput:
        if isinstance(job.request, GenerateRequest):
            result = await self.calls.call_model(job.model_name, job.request)
            return StageOutput(
                image=result.image,
                timings={"compute_s": round(result.compute_s, 4)},
                metrics={"batch_size": result.batch_size},
                provider=result.provider,
            )
        large = await self.calls.run_large(job.request)
        return StageOutput(
            width=large.width,
            height=large.height,
            timings=large.timings,
            metrics=large.metrics(),
            typography=large.typography,
        )
