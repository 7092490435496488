"""`TileRouter`: the Ray shell of a large-format job.

One async actor per job. It gives the job's logic (`core.largeformat.runner.
TileJobRunner`: base render, tiles, OOM splits, upscale passes, text, commit)
the model's Serve handle as its model call, and answers progress queries while
the job runs. Neither the router nor any replica ever holds the canvas; the
output is committed to the artifact store only when complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from actors.serve_calls import deployment_call
from core.config import StorageConfig
from core.largeformat.runner import TileJobRunner
from core.schemas import LargeRenderJob, LargeRenderResult, UpscaleJob
from core.store import open_store

__all__ = ["TileRouter"]


@ray.remote(num_cpus=0.1, max_concurrency=1000)
class TileRouter:
    """Renders one large-format or upscale job across the replicas of one model."""

    def __init__(self, app_name: str, storage: dict, spool_dir: str):
        self.app_name = app_name
        store = open_store(StorageConfig.model_validate(storage))
        self.runner = TileJobRunner(store, Path(spool_dir))

    async def progress(self) -> dict[str, Any]:
        """Tiles done / total, and the phase (base, tiles, pass N, text, done, failed)."""
        return self.runner.progress.as_dict()

    async def run(self, job: LargeRenderJob) -> LargeRenderResult:
        """Render a hires or tiled job into the store; raise `JobFailed` with a reason."""
        call = deployment_call(self.app_name, job.model_name, "render")
        return await self.runner.render(job, call)

    async def upscale(self, job: UpscaleJob) -> LargeRenderResult:
        """Upscale an image (tiled, chained passes) into the store."""
        call = deployment_call(self.app_name, job.model_name, "upscale")
        return await self.runner.upscale(job, call)
