"""Resume bookkeeping: which jobs of a campaign are claimed, done or failing.

One small JSON object per job key, each written atomically by the store, so a
runner killed at any point leaves only whole entries behind:

- ``claims/<key>.json``: the run id reserved for the job before it first
  renders. Every attempt, and a resumed runner, renders under that same id, so
  the job's run record is overwritten, never duplicated.
- ``done/<key>.json``: the run id and output keys of a finished job. A job with
  this entry is never rendered again.
- ``failed/<key>.json``: attempts so far and the last error; removed once the
  job succeeds. A job whose copy failed the typography gate is failed with its
  image kept for review (`review_image`): never delivered, never retried.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from core.campaign import layout
from core.campaign.expand import RenderJob
from core.errors import NotFoundError, StorageError
from core.records import RunRegistry, new_run_id
from core.store import ArtifactStore

__all__ = [
    "Claim",
    "DoneEntry",
    "FailedEntry",
    "JobOutcome",
    "Ledger",
    "claim_run_id",
    "done_keys",
    "job_outcomes",
    "load_ledger",
    "mark_done",
    "mark_failed",
    "pending_jobs",
    "recover_finished",
]

MAX_ERROR_CHARS = 4000
E = TypeVar("E", bound=BaseModel)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Claim(_Entry):
    """The run id a job renders under, whatever the attempt."""

    key: str = Field(description="Job key.")
    run_id: str = Field(description="Run id of the job's record.")
    claimed_at: AwareDatetime = Field(description="When the job was first claimed.")


class DoneEntry(_Entry):
    """A finished job: never rendered again."""

    key: str = Field(description="Job key.")
    item_id: str = Field(description="Manifest item the job belongs to.")
    run_id: str = Field(description="Run id of the job's record.")
    outputs: dict[str, str] = Field(description="Output name -> artifact key ('image' first).")
    finished_at: AwareDatetime = Field(description="When the job was recorded as done.")
    cost_usd: float | None = Field(
        None, ge=0, description="What its hosted calls cost in USD (None: no hosted call)."
    )


class FailedEntry(_Entry):
    """A job whose last attempt failed."""

    key: str = Field(description="Job key.")
    item_id: str = Field(description="Manifest item the job belongs to.")
    run_id: str | None = Field(None, description="Run id of the failed attempt's record.")
    attempts: int = Field(ge=1, description="Failed attempts so far, over every run.")
    error: str = Field(description="The last attempt's error.")
    failed_at: AwareDatetime = Field(description="When the last attempt failed.")
    review_image: str | None = Field(
        None,
        description="The image a person must review (its copy failed the typography gate); "
        "not delivered.",
    )


@dataclass
class Ledger:
    """What the store says about a campaign's jobs, by job key."""

    done: dict[str, DoneEntry]
    failed: dict[str, FailedEntry]  # only jobs that are not done


@dataclass(frozen=True)
class JobOutcome:
    """A job and what the ledger says about it."""

    job: RenderJob
    status: Literal["done", "review", "failed", "pending"]
    done: DoneEntry | None = None
    failed: FailedEntry | None = None

    @property
    def image_key(self) -> str | None:
        """The full image: output 'image', else the first output; for review, the kept one."""
        if self.failed is not None:
            return self.failed.review_image
        if self.done is None or not self.done.outputs:
            return None
        return self.done.outputs.get("image") or next(iter(self.done.outputs.values()))


def job_outcomes(jobs: Iterable[RenderJob], ledger: Ledger) -> list[JobOutcome]:
    """Each job with its done or failed entry; the rest are pending (or never tried)."""
    outcomes = []
    for job in jobs:
        if (done := ledger.done.get(job.key)) is not None:
            outcomes.append(JobOutcome(job, "done", done=done))
        elif (failed := ledger.failed.get(job.key)) is not None:
            status = "review" if failed.review_image else "failed"
            outcomes.append(JobOutcome(job, status, failed=failed))
        else:
            outcomes.append(JobOutcome(job, "pending"))
    return outcomes


def _now(at: datetime | None) -> datetime:
    return (at or datetime.now(UTC)).astimezone(UTC)


def _read(store: ArtifactStore, key: str, model: type[E]) -> E | None:
    try:
        data = store.get_bytes(key)
    except NotFoundError:
        return None
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise StorageError(
            key, f"not a valid {model.__name__} ({exc.error_count()} errors)"
        ) from exc


def _write(store: ArtifactStore, key: str, entry: BaseModel) -> None:
    store.put_bytes(key, entry.model_dump_json(indent=2).encode())


def _keys_under(store: ArtifactStore, campaign: str, folder: str) -> set[str]:
    prefix = f"{layout.campaign_prefix(campaign)}{folder}/"
    return {
        key.removeprefix(prefix).removesuffix(".json")
        for key in store.list_keys(prefix)
        if key.endswith(".json")
    }


def claim_run_id(store: ArtifactStore, job: RenderJob, at: datetime | None = None) -> str:
    """The run id to render `job` under: the one claimed before, else a new one, saved now.

    Call it before each attempt and give the run record this id.
    """
    key = layout.claim_key(job.campaign, job.key)
    claim = _read(store, key, Claim)
    if claim is None:
        claimed_at = _now(at)
        claim = Claim(key=job.key, run_id=new_run_id(claimed_at), claimed_at=claimed_at)
        _write(store, key, claim)
    return claim.run_id


def mark_done(
    store: ArtifactStore,
    job: RenderJob,
    run_id: str,
    outputs: dict[str, str],
    at: datetime | None = None,
    cost_usd: float | None = None,
) -> DoneEntry:
    """Record `job` as finished (its outputs: name -> artifact key); clear its failures."""
    entry = DoneEntry(
        key=job.key,
        item_id=job.item_id,
        run_id=run_id,
        outputs=outputs,
        finished_at=_now(at),
        cost_usd=cost_usd,
    )
    _write(store, layout.done_key(job.campaign, job.key), entry)
    store.delete(layout.failed_key(job.campaign, job.key))
    return entry


def mark_failed(
    store: ArtifactStore,
    job: RenderJob,
    error: str,
    run_id: str | None = None,
    at: datetime | None = None,
    review_image: str | None = None,
) -> FailedEntry:
    """Count one more failed attempt of `job` with its error; return the entry (attempts).

    `review_image`: the attempt rendered, but its image needs a person's review.
    """
    key = layout.failed_key(job.campaign, job.key)
    previous = _read(store, key, FailedEntry)
    entry = FailedEntry(
        key=job.key,
        item_id=job.item_id,
        run_id=run_id,
        attempts=(previous.attempts if previous else 0) + 1,
        error=error[:MAX_ERROR_CHARS],
        failed_at=_now(at),
        review_image=review_image,
    )
    _write(store, key, entry)
    return entry


def done_keys(store: ArtifactStore, campaign: str) -> set[str]:
    """Keys of the campaign's finished jobs (one listing, no reads)."""
    return _keys_under(store, campaign, "done")


def load_ledger(store: ArtifactStore, campaign: str) -> Ledger:
    """Every done and failed entry of the campaign; a done job is never listed as failed."""
    prefix = layout.campaign_prefix(campaign)
    done = {}
    for key in sorted(done_keys(store, campaign)):
        if (entry := _read(store, f"{prefix}done/{key}.json", DoneEntry)) is not None:
            done[key] = entry
    failed = {}
    for key in sorted(_keys_under(store, campaign, "failed") - done.keys()):
        if (failure := _read(store, f"{prefix}failed/{key}.json", FailedEntry)) is not None:
            failed[key] = failure
    return Ledger(done=done, failed=failed)


def pending_jobs(
    store: ArtifactStore,
    campaign: str,
    jobs: Iterable[RenderJob],
    *,
    max_attempts: int | None = None,
) -> list[RenderJob]:
    """The jobs still to render, in order and each once.

    Done jobs are skipped and, given `max_attempts`, so are jobs that already failed
    that many times (over every run); without it a re-run retries every failure.
    """
    jobs = list(jobs)
    strangers = sorted({job.campaign for job in jobs} - {campaign})
    if strangers:
        raise ValueError(f"jobs of campaigns {strangers} given for campaign {campaign!r}")
    skip = done_keys(store, campaign)
    if max_attempts is not None:
        failed = load_ledger(store, campaign).failed
        skip |= {key for key, entry in failed.items() if entry.attempts >= max_attempts}
    pending = []
    for job in jobs:
        if job.key not in skip:
            pending.append(job)
            skip.add(job.key)
    return pending


def recover_finished(
    store: ArtifactStore, jobs: Sequence[RenderJob], registry: RunRegistry
) -> list[DoneEntry]:
    """Mark done the claimed jobs whose run record says done (a runner died in between).

    Run it once when a runner starts, before `pending_jobs`.
    """
    recovered = []
    campaigns = {job.campaign for job in jobs}
    claimed = {c: _keys_under(store, c, "claims") - done_keys(store, c) for c in campaigns}
    for job in jobs:
        if job.key not in claimed[job.campaign]:
            continue
        claim = _read(store, layout.claim_key(job.campaign, job.key), Claim)
        try:
            record = registry.get(claim.run_id) if claim else None
        except NotFoundError:
            continue
        if record is not None and record.status == "done":
            recovered.append(mark_done(store, job, record.id, dict(record.outputs)))
            claimed[job.campaign].discard(job.key)
    return recovered
