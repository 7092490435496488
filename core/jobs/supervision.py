"""The supervisor's loop, no Ray: start queued jobs, renew leases, adopt orphans, cancel.

One `Supervision` runs per Serve application (inside that application's
supervisor actor). Every tick it reads the application's unfinished jobs from
the store (other applications sharing the store have supervisors of their own)
and

- renews the leases of the jobs it works on and saves their progress;
- adopts every job whose lease has expired, or that a previous incarnation of
  this supervisor (same cluster, different holder) held: it is started again and
  resumes from its checkpoints;
- starts queued jobs, oldest first, while each model runs fewer than
  `max_running_per_model` jobs.

The work itself is an injected `Work` function per job kind; it reports progress
through a callback and returns the job's result (or raises).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core import telemetry
from core.errors import JobFailed, RenderClusterError, TypographyGateFailed
from core.jobs.model import DEFAULT_APP, Job, JobError, Progress, now
from core.jobs.store import JobStore
from core.jobs.webhooks import deliver, pending_delivery
from core.jobs_config import JobsConfig

__all__ = ["Holder", "JobOutcome", "Report", "Supervision", "Work"]

logger = logging.getLogger(__name__)

Report = Callable[[Progress], None]


@dataclass(frozen=True)
class JobOutcome:
    """How a piece of work ended: its final status (done or awaiting_approval) and result."""

    status: str = "done"
    result: dict[str, Any] | None = None


Work = Callable[[Job, Report], Awaitable[JobOutcome]]


@dataclass(frozen=True)
class Holder:
    """Who holds leases: this cluster (stable across supervisor restarts) and incarnation."""

    cluster: str
    incarnation: str

    def __str__(self) -> str:
        return f"{self.cluster}/{self.incarnation}"

    def may_adopt(self, job: Job) -> bool:
        """Whether a running job can be taken over by this holder now."""
        lease = job.lease
        if lease is None or lease.expired():
            return True
        cluster, _, incarnation = lease.holder.partition("/")
        # One supervisor per cluster: a lease of our cluster not held by us is a dead one's.
        return cluster == self.cluster and incarnation != self.incarnation


class Supervision:
    """Runs jobs from `jobs` with the `work` of their kind (see the module)."""

    def __init__(
        self,
        jobs: JobStore,
        settings: JobsConfig,
        holder: Holder,
        work: dict[str, Work],
        app: str = DEFAULT_APP,
    ):
        self.jobs = jobs
        self.app = app
        self.settings = settings
        self.holder = holder
        self.work = work
        self.tasks: dict[str, asyncio.Task] = {}
        self.progress: dict[str, Progress] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._deliveries: dict[str, asyncio.Task] = {}
        self._queued_models: set[str] = set()

    # -- the loop -------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Tick until cancelled; the first tick also resumes owed webhook deliveries."""
        await self._resume_deliveries()
        while True:
            try:
                await self.tick()
            except Exception:  # a store hiccup must not stop the loop
                logger.exception("job supervisor tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
            self._wake.clear()

    async def reconfigure(
        self, jobs: JobStore, settings: JobsConfig, work: dict[str, Work]
    ) -> None:
        """Use another store, settings and work from the next tick on (jobs in flight finish)."""
        async with self._lock:
            self.jobs, self.settings, self.work = jobs, settings, work
        self.nudge()

    def nudge(self) -> None:
        """Look at the queue now (a job was submitted or changed)."""
        self._wake.set()

    async def tick(self) -> None:
        async with self._lock:
            unfinished = [
                job for job in await asyncio.to_thread(self.jobs.unfinished) if job.app == self.app
            ]
            self._report_queue(unfinished)
            running = Counter()
            for job in unfinished:
                if job.status == "running" and job.id in self.tasks:
                    await self._renew(job)
                    running[job.model] += 1
            for job in unfinished:
                if job.id in self.tasks or job.status != "running":
                    continue
                if self.holder.may_adopt(job):
                    await self._start(job)
                    running[job.model] += 1
            for job in unfinished:
                if job.status == "queued" and job.id not in self.tasks:
                    if job.cancel_requested:
                        await self._end(
                            job,
                            "cancelled",
                            error=JobError(code="cancelled", message="cancelled before it started"),
                        )
                    elif running[job.model] < self.settings.max_running_per_model:
                        await self._start(job)
                        running[job.model] += 1

    def _report_queue(self, unfinished: list[Job]) -> None:
        """The queue depth per model (0 for a model whose queue emptied)."""
        queued = Counter(str(job.model) for job in unfinished if job.status == "queued")
        for model in self._queued_models | set(queued):
            telemetry.gauge("rendercluster_queue_depth", queued.get(model, 0), model=model)
        self._queued_models = set(queued)

    async def _renew(self, job: Job) -> None:
        progress = self.progress.get(job.id, job.progress)
        lease = job.lease
        near_expiry = lease is None or (lease.expires_at - now()).total_seconds() < (
            self.settings.lease_ttl_s / 2
        )
        if near_expiry or progress != job.progress:
            await self._save(
                job.moved(progress=progress).leased(str(self.holder), self.settings.lease_ttl_s)
            )

    async def _start(self, job: Job) -> None:
        if job.attempts >= self.settings.max_attempts:
            error = JobError(
                code="too_many_attempts", message=f"started {job.attempts} times without finishing"
            )
            await self._end(job, "failed", error=error)
            return
        update = {"status": "running", "attempts": job.attempts + 1}
        if job.started_at is None:
            update["started_at"] = now()
        started = await self._save(
            job.moved(**update).leased(str(self.holder), self.settings.lease_ttl_s)
        )
        self.tasks[job.id] = asyncio.create_task(self._run(started))

    # -- one job --------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        def report(progress: Progress) -> None:
            self.progress[job.id] = progress

        try:
            outcome = await self.work[job.kind](job, report)
        except asyncio.CancelledError:
            async with self._lock:
                await self._finish_cancelled(job)
            raise
        except Exception as exc:
            async with self._lock:
                await self._after_failure(job, exc)
        else:
            async with self._lock:
                await self._end_current(job, outcome.status, None, outcome.result)
        finally:
            self.tasks.pop(job.id, None)
            self.progress.pop(job.id, None)
            self.nudge()

    async def _after_failure(self, job: Job, exc: Exception) -> None:
        """A failure of the project's own ends the job; anything else starts it again."""
        if isinstance(exc, TypographyGateFailed):
            review = {"review_image": exc.review_image, "run_id": exc.run_id}
            error = JobError(code="gate_failed", message=exc.message)
            await self._end_current(job, "failed", error, review)
        elif isinstance(exc, RenderClusterError):
            await self._end_current(job, "failed", JobError(code=_code(exc), message=str(exc)))
        else:  # the worker (router, replica, store) died: a new attempt resumes the job
            logger.warning("job %s attempt %d stopped: %r", job.id, job.attempts, exc)
            await self._release(job)

    async def _release(self, job: Job) -> None:
        """Give the lease up so that the next tick starts the job again (a new attempt)."""
        current = await asyncio.to_thread(self.jobs.get, job.id)
        if not current.terminal:
            await self._save(current.moved(lease=None))

    async def _end_current(
        self, job: Job, status: str, error: JobError | None, result: dict[str, Any] | None = None
    ) -> None:
        current = await asyncio.to_thread(self.jobs.get, job.id)
        if current.terminal:
            return
        if status == "awaiting_approval":
            await self._save(current.moved(status=status, result=result, lease=None))
            return
        await self._end(current, status, error=error, result=result)

    async def _end(
        self,
        job: Job,
        status: str,
        error: JobError | None = None,
        result: dict[str, Any] | None = None,
    ) -> Job:
        progress = self.progress.get(job.id, job.progress)
        if status == "done":
            progress = progress.model_copy(
                update={"phase": "done", "done": max(progress.done, progress.total)}
            )
        ended = await self._save(
            job.moved(status=status, error=error, result=result, progress=progress)
        )
        if ended.started_at is not None and ended.finished_at is not None:
            seconds = (ended.finished_at - ended.started_at).total_seconds()
            telemetry.observe(
                "rendercluster_job_duration_seconds", seconds, kind=ended.kind, status=status
            )
        if pending_delivery(ended, self.settings.webhook_max_attempts):
            self._schedule_delivery(ended)
        return ended

    async def _finish_cancelled(self, job: Job) -> None:
        current = await asyncio.to_thread(self.jobs.get, job.id)
        if not current.terminal:
            await self._end(
                current, "cancelled", error=JobError(code="cancelled", message="cancelled")
            )

    # -- requests from the API ------------------------------------------------------

    async def cancel(self, job_id: str, code: str = "cancelled", message: str = "cancelled") -> Job:
        """Stop a job: tiles in flight are abandoned and nothing is delivered."""
        async with self._lock:
            job = await asyncio.to_thread(self.jobs.get, job_id)
            task = self.tasks.get(job_id)
            if job.terminal or task is None:
                if job.terminal:
                    return job
                error = JobError(code=code, message=message)
                return await self._end(job, "cancelled", error=error)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        async with self._lock:
            job = await asyncio.to_thread(self.jobs.get, job_id)
            if job.terminal:
                return job
            return await self._end(job, "cancelled", error=JobError(code=code, message=message))

    async def resume(self, job_id: str) -> Job:
        """Continue a job that waited (approved): it runs again on the next tick."""
        async with self._lock:
            job = await asyncio.to_thread(self.jobs.get, job_id)
            if job.status == "awaiting_approval":
                job = await self._save(job.moved(status="running", lease=None))
        self.nudge()
        return job

    # -- webhooks -------------------------------------------------------------------

    def _schedule_delivery(self, job: Job) -> None:
        if job.id in self._deliveries:
            return
        secret = os.environ.get(self.settings.webhook_secret_env, "")
        task = asyncio.create_task(
            deliver(
                job,
                secret,
                self._save,
                self.settings.webhook_max_attempts,
                self.settings.webhook_backoff_s,
            )
        )
        self._deliveries[job.id] = task
        task.add_done_callback(lambda _: self._deliveries.pop(job.id, None))

    async def _resume_deliveries(self) -> None:
        ids = await asyncio.to_thread(self.jobs.ids)
        for job_id in ids[-1000:]:
            job = await asyncio.to_thread(self.jobs.find, job_id)
            owed = job is not None and job.app == self.app
            if owed and pending_delivery(job, self.settings.webhook_max_attempts):
                self._schedule_delivery(job)

    async def _save(self, job: Job) -> Job:
        return await asyncio.to_thread(self.jobs.save, job)


def _code(exc: Exception) -> str:
    return "render_failed" if isinstance(exc, JobFailed) else "request_failed"
