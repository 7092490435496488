"""Large-format jobs: start a `TileRouter` per job, follow it, record the outcome.

A job's record is written when it starts (status running) and rewritten when
it ends (done with its output and seam score, or failed with the reason), so
any ingress replica can answer `GET /v1/renders/{id}` from the store once the
job is over; while it runs, its router actor (named after the job) answers.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

import ray

from actors.tile_router import TileRouter
from core.config import ClusterConfig
from core.errors import JobFailed
from core.records import RunRecord, RunRegistry, with_typography
from core.schemas import LargeRenderJob, LargeRenderResult, UpscaleJob

logger = logging.getLogger("ray.serve")
JOB_NAMESPACE = "render-cluster-jobs"


def router_name(job_id: str) -> str:
    """Name of the job's router actor (in `JOB_NAMESPACE`)."""
    return f"router-{job_id}"


class JobTracker:
    """Starts and follows large-format jobs from an ingress replica."""

    def __init__(self, app_name: str, config: ClusterConfig, registry: RunRegistry):
        self.app_name = app_name
        self.config = config
        self.registry = registry
        self.spool_dir = str(Path(tempfile.gettempdir()) / "render-cluster-spool")
        self._tasks: dict[str, asyncio.Task] = {}

    def start(self, record: RunRecord, job: LargeRenderJob | UpscaleJob) -> RunRecord:
        """Save the job's running record and hand the job to a new router actor."""
        self.registry.save(record)
        router = TileRouter.options(name=router_name(job.job_id), namespace=JOB_NAMESPACE).remote(
            self.app_name, self.config.storage.model_dump(mode="json"), self.spool_dir
        )
        call = router.upscale if isinstance(job, UpscaleJob) else router.run
        self._tasks[job.job_id] = asyncio.create_task(self._follow(record, router, call, job))
        return record

    async def _follow(
        self, record: RunRecord, router: Any, call: Any, job: LargeRenderJob | UpscaleJob
    ) -> RunRecord:
        try:
            result: LargeRenderResult = await call.remote(job)
        except JobFailed as exc:
            final = record.model_copy(update={"status": "failed", "error": exc.reason})
        except Exception as exc:  # the router itself died: the job is over
            logger.exception("router of job %s failed", job.job_id)
            final = record.model_copy(
                update={"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            )
        else:
            final = record.model_copy(
                update={
                    "status": "done",
                    "timings": result.timings,
                    "metrics": result.metrics(),
                    "outputs": {"image": result.output_key},
                }
            )
            if result.typography is not None:
                final = with_typography(final, result.typography)
        finally:
            ray.kill(router, no_restart=True)
        self.registry.save(final)
        return final

    async def wait(self, job_id: str) -> RunRecord:
        """Wait for a job started here and return its final record."""
        return await self._tasks[job_id]

    async def status(self, job_id: str) -> tuple[RunRecord, dict[str, Any]]:
        """The job's record and its progress ({status, phase, done, total})."""
        record = self.registry.get(job_id)
        if record.status != "running":
            total = int(record.metrics.get("tiles", 0))
            done = total if record.status == "done" else 0
            return record, {
                "status": record.status,
                "phase": record.status,
                "done": done,
                "total": total,
            }
        try:
            router = ray.get_actor(router_name(job_id), namespace=JOB_NAMESPACE)
            progress = await router.progress.remote()
        except ValueError:  # the router is gone: the record is about to be final
            record = self.registry.get(job_id)
            progress = {"status": record.status, "phase": record.status, "done": 0, "total": 0}
        except ray.exceptions.RayActorError:
            progress = {"status": "running", "phase": "finishing", "done": 0, "total": 0}
        return record, progress
