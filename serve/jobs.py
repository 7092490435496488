"""The ingress side of durable jobs: admit, store, nudge, answer from the store.

A job is admitted by writing it (and its run record) to the store and nudging
the supervisor; nothing of it runs in the ingress. Status calls read the store
only, so they answer at once whatever the cluster is doing; a `wait` polls the
store, so a client that disconnects only stops its own polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actors.job_supervisor import supervisor
from core.config import APP_NAME, ClusterConfig
from core.errors import NotFoundError, OverloadedError, QueueFull, QuotaExceeded, RequestError
from core.jobs.model import Job, JobKind
from core.jobs.store import JobStore
from core.records import RunRecord, RunRegistry
from core.tenants import current_tenant, visible
from serve.capacity import Capacity
from serve.gate import current_caller

logger = logging.getLogger("ray.serve")

WAIT_POLL_S = 0.25
SETTLED = frozenset({"done", "failed", "cancelled", "awaiting_approval"})


class JobDesk:
    """Admits jobs and answers for them from the store."""

    def __init__(
        self,
        config: ClusterConfig,
        registry: RunRegistry,
        capacity: Capacity,
        app_name: str = APP_NAME,
    ):
        self.config = config
        self.app_name = app_name
        self.registry = registry
        self.jobs = JobStore(registry.store)
        self.capacity = capacity

    async def admit(
        self,
        kind: JobKind,
        job_id: str,
        model: str | None,
        request: dict[str, Any],
        record: RunRecord | None = None,
        callback_url: str | None = None,
        idempotency: tuple[str, dict] | None = None,
    ) -> Job:
        """Queue a job (its record too), or raise 429/503 when its model cannot take it."""
        if model is not None:
            await self._check_room(model)
        await self._check_tenant_jobs()
        owner = current_tenant.get()
        job = Job(
            id=job_id,
            kind=kind,
            model=model,
            request=request,
            callback_url=callback_url,
            owner=owner,
            app=self.app_name,
        )
        if idempotency is not None:
            job = job.model_copy(update={"idempotency_key": idempotency[0]})
        if record is not None:
            await asyncio.to_thread(self.registry.save, record)
        await asyncio.to_thread(self.jobs.save, job)
        if idempotency is not None:
            await asyncio.to_thread(self.jobs.claim, idempotency[0], owner, idempotency[1], job.id)
        self.nudge()
        return job

    async def _check_tenant_jobs(self) -> None:
        """429 naming `max_concurrent_jobs` when the caller's tenant has that many unfinished."""
        caller = current_caller.get()
        limit = caller.limits.max_concurrent_jobs if caller is not None else None
        if limit is None:
            return
        unfinished = await asyncio.to_thread(self.jobs.unfinished)
        mine = sum(1 for job in unfinished if job.owner == caller.tenant)
        if mine >= limit:
            raise QuotaExceeded("max_concurrent_jobs", limit, 5, f"{mine} unfinished jobs")

    async def check_placement(self, model: str) -> None:
        """503 naming why, when `model` has no replica and cannot get one."""
        problem = await self.capacity.placement_problem(model)
        if problem is not None:
            raise OverloadedError(model, retry_after_s=30, reason=problem)

    async def _check_room(self, model: str) -> None:
        await self.check_placement(model)
        limit = self.config.jobs.max_queued_per_model
        unfinished = await asyncio.to_thread(self.jobs.unfinished)
        queued = sum(1 for job in unfinished if job.model == model and job.status == "queued")
        if queued >= limit:
            raise QueueFull(model, queued, limit, retry_after_s=5)

    def nudge(self) -> None:
        """Tell the supervisor to look at the queue (fire and forget)."""
        try:
            supervisor(self.app_name).nudge.remote()
        except ValueError:  # no supervisor yet: it reads the queue when it starts
            logger.warning("no job supervisor is running; the job waits in the store")

    async def get(self, job_id: str) -> Job:
        """The job, when the caller's tenant may see it (another tenant's: 404)."""
        return await asyncio.to_thread(self.jobs.get, job_id, current_tenant.get())

    async def find(self, job_id: str) -> Job | None:
        job = await asyncio.to_thread(self.jobs.find, job_id)
        return job if job is not None and visible(job.owner, current_tenant.get()) else None

    async def wait(self, job_id: str, timeout_s: float | None = None) -> Job:
        """Poll the store until the job is settled (ended, or waiting for approval)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = await self.get(job_id)
            if job.status in SETTLED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                return job
            await asyncio.sleep(WAIT_POLL_S)

    async def cancel(self, job_id: str, code: str = "cancelled", message: str = "cancelled") -> Job:
        """Cancel through the supervisor (the one writer of running jobs); its record too."""
        job = await self.get(job_id)
        if job.terminal:
            raise RequestError("id", f"job {job_id} is already {job.status}")
        try:
            call = supervisor(job.app).cancel.remote(job_id, code, message)
        except ValueError:
            raise OverloadedError("job-supervisor", 5, "no job supervisor runs") from None
        cancelled = Job.model_validate(await asyncio.wait_for(call, timeout=30))
        try:
            record = await asyncio.to_thread(self.registry.get, job_id)
        except NotFoundError:  # a campaign's job has no run record
            return cancelled
        if record.status in ("queued", "running", "awaiting_approval"):
            ended = record.model_copy(update={"status": "cancelled", "error": message})
            await asyncio.to_thread(self.registry.save, ended)
        return cancelled

    async def resume(self, job_id: str) -> Job:
        """Continue a job that waits for approval, through its application's supervisor."""
        job = await self.get(job_id)
        state = await asyncio.wait_for(supervisor(job.app).resume.remote(job_id), timeout=30)
        return Job.model_validate(state)

    async def claim(self, key: str | None, body: dict, created_id: str) -> None:
        if key is not None:
            await asyncio.to_thread(self.jobs.claim, key, current_tenant.get(), body, created_id)
