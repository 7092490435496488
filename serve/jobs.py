"""Large-format and upscale jobs followed from an ingress replica.

A job's record is written when it starts (status running) and rewritten when
it ends (done with its output and seam score, or failed with the reason), so
any ingress replica can answer `GET /v1/renders/{id}` from the store once the
job is over; while it runs, its router actor (named after the job) answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from actors.render_calls import RenderCalls, gate_failure
from core.errors import JobFailed, TypographyGateFailed
from core.records import RunRecord
from core.schemas import LargeRenderJob, UpscaleJob

logger = logging.getLogger("ray.serve")
JOB_NAMESPACE = "render-cluster-jobs"


def router_name(job_id: str) -> str:
    """Name of the job's router actor (in `JOB_NAMESPACE`)."""
    return f"router-{job_id}"


class JobTracker:
    """Starts and follows large-format jobs from an ingress replica."""

    def __init__(self, calls: RenderCalls):
        self.calls = calls
        self.registry = calls.registry
        self._tasks: dict[str, asyncio.Task] = {}

    def start(self, record: RunRecord, job: LargeRenderJob | UpscaleJob) -> RunRecord:
        """Save the job's running record and hand the job to a new router actor."""
        self.registry.save(record)
        router = self.calls.models.start_router(router_name(job.job_id), JOB_NAMESPACE)
        self._tasks[job.job_id] = asyncio.create_task(self._follow(record, job, router))
        return record

    async def _follow(
        self, record: RunRecord, job: LargeRenderJob | UpscaleJob, router: Any
    ) -> RunRecord:
        try:
            return await self.calls.finish_large(record, job, router)
        except TypographyGateFailed:  # the record, failed for review, is written
            return self.registry.get(job.job_id)
        except JobFailed as exc:
            final = record.model_copy(update={"status": "failed", "error": exc.reason})
        except Exception as exc:  # the router itself died: the job is over
            logger.exception("router of job %s failed", job.job_id)
            final = record.model_copy(
                update={"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            )
        self.registry.save(final)
        return final

    async def wait(self, job_id: str) -> RunRecord:
        """Wait for a job started here and return its final record.

        A job whose text failed the typography gate raises `TypographyGateFailed`
        (its image kept for review), as a one-call render does.
        """
        final = await self._tasks[job_id]
        failed = gate_failure(final)
        if failed is not None:
            raise failed
        return final

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
