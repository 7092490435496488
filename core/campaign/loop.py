"""`CampaignLoop`: renders a campaign's jobs once each, bounded, resumable, recorded. No Ray.

It marks done what the run records say finished, skips what the ledger says is
done, keeps at most `bound` renders in flight (re-read from an injected
`capacity` while it runs), retries a 503 with backoff without counting it,
retries other failures up to `max_attempts` and then reports them, keeps for
review (never retries nor delivers) a job whose copy failed the typography
gate, records every job under its claimed run id (so a job never has two
records), saves progress every second and writes the report at the end.
Renders go through an injected async `render_job(job, run_id) -> RunRecord`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from core.campaign.expand import RenderJob
from core.campaign.ledger import (
    claim_run_id,
    mark_done,
    mark_failed,
    pending_jobs,
    recover_finished,
)
from core.campaign.plan import job_record, stats_key
from core.campaign.progress import CampaignState, ProgressTracker, save_status
from core.campaign.report import write_report
from core.config import ClusterConfig
from core.errors import OverloadedError, RenderClusterError, RequestError, TypographyGateFailed
from core.records import RunRecord, RunRegistry
from core.store import ArtifactStore

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_IN_FLIGHT",
    "CampaignLoop",
    "LoopSettings",
    "RenderJobFn",
    "RunnerStats",
    "describe",
    "load_stats",
]

DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_MAX_ATTEMPTS = 3

RenderJobFn = Callable[[RenderJob, str], Awaitable[RunRecord]]
CapacityFn = Callable[[], Awaitable[int]]
T = TypeVar("T")


@dataclass(frozen=True)
class LoopSettings:
    """How hard and how often the loop tries."""

    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT  # caps whatever `capacity` says
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # failed attempts per job and run, 503s aside
    backoff_s: float = 0.5  # first retry delay; doubles per retry, jittered
    max_backoff_s: float = 10.0
    status_interval_s: float = 1.0
    capacity_interval_s: float = 2.0


class RunnerStats(BaseModel):
    """What a runner did, beside the progress numbers: saved as ``runner.json``."""

    model_config = ConfigDict(extra="forbid")

    campaign: str
    state: CampaignState
    bound: int = Field(description="Renders allowed in flight now.")
    bound_max: int = Field(description="The largest bound this run used.")
    max_in_flight_observed: int = Field(description="Most renders seen in flight at once.")
    rendered: int = Field(0, description="Jobs this run rendered and recorded.")
    skipped: int = Field(0, description="Jobs already done when this run started.")
    recovered: int = Field(0, description="Jobs recorded by a dead runner, marked done now.")
    gave_up: int = Field(0, description="Jobs this run gave up on after their last attempt.")
    for_review: int = Field(
        0, description="Jobs whose copy failed the typography gate: kept for review, not delivered."
    )
    failed_attempts: int = Field(0, description="Attempts that failed (503s not counted).")
    overloaded_retries: int = Field(0, description="503 / backpressure answers retried.")
    elapsed_s: float = 0.0
    report: str | None = Field(None, description="Store key of the HTML report.")
    summary_csv: str | None = Field(None, description="Store key of the CSV summary.")


def load_stats(store: ArtifactStore, campaign: str) -> RunnerStats | None:
    """The runner numbers of the campaign's last run, if it saved any."""
    key = stats_key(campaign)
    if not store.exists(key):
        return None
    return RunnerStats.model_validate_json(store.get_bytes(key))


class _Slots:
    """Renders in flight, at most `limit` (which may change while they run)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.max_used = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.used < self.limit)
            self.used += 1
            self.max_used = max(self.max_used, self.used)

    async def __aexit__(self, *_: object) -> None:
        async with self._changed:
            self.used -= 1
            self._changed.notify()

    async def resize(self, limit: int) -> None:
        async with self._changed:
            self.limit = limit
            self._changed.notify_all()


def describe(exc: BaseException) -> str:
    """One line for the ledger and the report (Ray's wrapper and traceback left out)."""
    exc = _cause(exc)
    return str(exc) if isinstance(exc, RenderClusterError) else f"{type(exc).__name__}: {exc}"


def _cause(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)  # Ray's RayTaskError keeps the remote exception here
    return cause if isinstance(cause, BaseException) else exc


class CampaignLoop:
    """Renders a campaign's pending jobs through `render_job`, bounded, resumable, recorded."""

    def __init__(
        self,
        store: ArtifactStore,
        config: ClusterConfig,
        jobs: Sequence[RenderJob],
        render_job: RenderJobFn,
        *,
        capacity: CapacityFn | None = None,
        settings: LoopSettings = LoopSettings(),
    ):
        """`capacity()`: renders the cluster takes at once (unset: `settings.max_in_flight`)."""
        if not jobs:
            raise ValueError("a campaign needs at least one job")
        self.store = store
        self.config = config
        self.jobs = list(jobs)
        self.campaign = self.jobs[0].campaign
        self.render_job = render_job
        self.capacity = capacity
        self.settings = settings
        self.registry = RunRegistry(store)
        self.slots = _Slots(settings.max_in_flight)
        self.stats = RunnerStats(
            campaign=self.campaign, state="running", bound=0, bound_max=0, max_in_flight_observed=0
        )
        self.tracker = ProgressTracker(self.campaign, len(self.jobs))
        self._writes: set[asyncio.Future] = set()

    async def run(self) -> RunnerStats:
        """Render everything not done yet, then write the report; return this run's numbers.

        Cancelled (the runner killed), it saves its progress as stopped and re-raises:
        a new loop over the same jobs finishes the rest.
        """
        started = time.monotonic()
        recovered = await self._write(recover_finished, self.store, self.jobs, self.registry)
        pending = await self._write(pending_jobs, self.store, self.campaign, self.jobs)
        skipped = len(self.jobs) - len(pending)
        self.tracker = ProgressTracker(self.campaign, len(self.jobs), done=skipped)
        self._update(recovered=len(recovered), skipped=skipped - len(recovered))
        await self._resize()
        queue = deque(pending)
        helpers = [asyncio.create_task(self._status_saver()), asyncio.create_task(self._resizer())]
        workers = [
            asyncio.create_task(self._worker(queue))
            for _ in range(min(self.settings.max_in_flight, len(pending)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            await self._settle(workers + helpers)
            self._update(elapsed_s=round(time.monotonic() - started, 3))
            self._save("stopped")
            raise
        await self._settle(helpers)
        self._save("running")
        keys = await asyncio.to_thread(
            write_report, self.store, self.campaign, self.jobs, registry=self.registry
        )
        self._update(
            report=keys.html, summary_csv=keys.csv, elapsed_s=round(time.monotonic() - started, 3)
        )
        self._save("finished")
        return self.stats

    async def _worker(self, queue: deque[RenderJob]) -> None:
        while queue:
            await self._render(queue.popleft())

    async def _render(self, job: RenderJob) -> None:
        """One job to its end: done, or given up on after `max_attempts` failures."""
        run_id = await self._write(claim_run_id, self.store, job)
        failures = overloads = 0
        while True:
            async with self.slots:
                self._update(max_in_flight_observed=self.slots.max_used)
                self.tracker.started()
                try:
                    record: RunRecord | None = await self.render_job(job, run_id)
                    error = None
                except Exception as exc:
                    record, error = None, exc
            if record is not None:
                await self._write(self._record_done, job, run_id, record)
                self.tracker.finished(ok=True)
                self._update(rendered=self.stats.rendered + 1)
                return
            assert error is not None
            if isinstance(_cause(error), OverloadedError):
                overloads += 1
                self.tracker.will_retry()
                self._update(overloaded_retries=self.stats.overloaded_retries + 1)
                await asyncio.sleep(self._backoff(overloads))
                continue
            failures += 1
            await self._write(self._record_failure, job, run_id, error)
            self._update(failed_attempts=self.stats.failed_attempts + 1)
            if isinstance(_cause(error), TypographyGateFailed):  # rendered: a person decides
                self.tracker.finished(ok=False)
                self._update(for_review=self.stats.for_review + 1)
                return
            permanent = isinstance(_cause(error), RequestError)
            if permanent or failures >= self.settings.max_attempts:
                self.tracker.finished(ok=False)
                self._update(gave_up=self.stats.gave_up + 1)
                return
            self.tracker.will_retry()
            await asyncio.sleep(self._backoff(failures))

    async def _write(self, write: Callable[..., T], *args: Any) -> T:
        """Run store I/O in a thread, to its end even if the caller is cancelled.

        A stopping loop waits for every write (`_settle`), so no job is left half-recorded.
        """
        future = asyncio.ensure_future(asyncio.to_thread(write, *args))
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)
        return await asyncio.shield(future)

    async def _settle(self, tasks: list[asyncio.Task]) -> None:
        """Cancel `tasks`, then wait for them and for every write they started."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)

    def _record_done(self, job: RenderJob, run_id: str, record: RunRecord) -> None:
        if record.id != run_id or record.status != "done" or not record.outputs:
            raise ValueError(f"render_job must return a done record {run_id} with outputs")
        self.registry.save(record)
        mark_done(self.store, job, run_id, dict(record.outputs), cost_usd=record.cost_usd)

    def _record_failure(self, job: RenderJob, run_id: str, error: BaseException) -> None:
        message, cause, review = describe(error), _cause(error), None
        fields: dict[str, Any] = {"status": "failed", "error": message}
        if isinstance(cause, TypographyGateFailed) and cause.review_image is not None:
            review = cause.review_image
            fields.update(outputs={"review_image": review}, typography=cause.report)
        self.registry.save(job_record(job, self.config, run_id, **fields))
        mark_failed(self.store, job, message, run_id=run_id, review_image=review)

    def _backoff(self, retry: int) -> float:
        ceiling = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (retry - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def _resize(self) -> None:
        wanted = await self.capacity() if self.capacity else self.settings.max_in_flight
        bound = max(1, min(wanted, self.settings.max_in_flight))
        await self.slots.resize(bound)
        self._update(bound=bound, bound_max=max(bound, self.stats.bound_max))

    async def _resizer(self) -> None:
        while True:
            await asyncio.sleep(self.settings.capacity_interval_s)
            await self._resize()

    async def _status_saver(self) -> None:
        while True:
            await self._write(self._save, "running")
            await asyncio.sleep(self.settings.status_interval_s)

    def _update(self, **fields: Any) -> None:
        self.stats = self.stats.model_copy(update=fields)

    def _save(self, state: CampaignState) -> None:
        self._update(state=state)
        save_status(self.store, self.tracker.snapshot(state))
        stats = self.stats.model_dump_json(indent=2).encode()
        self.store.put_bytes(stats_key(self.campaign), stats)
