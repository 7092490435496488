"""The job record: what was asked, where it stands, who works on it, how it ended.

Statuses are the words the routes already use. A status never goes backwards:
`queued` -> `running` <-> `awaiting_approval` -> `done` | `failed` | `cancelled`,
and a terminal status is final.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, JsonValue

from core.records import RUN_ID_PATTERN

__all__ = [
    "DEFAULT_APP",
    "TERMINAL",
    "Delivery",
    "Job",
    "JobError",
    "JobKind",
    "JobStatus",
    "Lease",
    "Progress",
    "StatusWentBackwards",
    "now",
]

JobKind = Literal["hires", "upscale", "pipeline", "campaign"]
JobStatus = Literal["queued", "running", "awaiting_approval", "done", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"done", "failed", "cancelled"})
_RANK = {"queued": 0, "running": 1, "awaiting_approval": 1, "done": 2, "failed": 2, "cancelled": 2}
_ID = re.compile(RUN_ID_PATTERN)
DEFAULT_APP = "render-cluster"  # jobs stored before they named their application


def now() -> datetime:
    return datetime.now(UTC)


class StatusWentBackwards(ValueError):
    """A job update would move its status backwards (or out of a terminal status)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Progress(_Model):
    """Tiles (or stages, or items) done out of total, and the phase."""

    done: int = Field(0, ge=0)
    total: int = Field(0, ge=0)
    phase: str = Field("queued", max_length=64)


class JobError(_Model):
    """Why a job failed: a stable code and a message for people."""

    code: str = Field(max_length=64, description="e.g. tile_failed, gate_failed, cancelled.")
    message: str = Field(max_length=4000)


class Lease(_Model):
    """Who works on the job, until when (renewed while the work goes on)."""

    holder: str = Field(max_length=200)
    expires_at: AwareDatetime

    def expired(self, at: datetime | None = None) -> bool:
        return (at or now()) >= self.expires_at


class Delivery(_Model):
    """One webhook delivery attempt."""

    attempt: int = Field(ge=1)
    at: AwareDatetime
    status_code: int | None = None
    error: str | None = Field(None, max_length=500)

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Job(_Model):
    """One durable job (see the module)."""

    id: str = Field(pattern=RUN_ID_PATTERN, description="Also the id of its run record.")
    kind: JobKind
    owner: str | None = Field(None, description="Tenant of the API key that made the job.")
    app: str = Field(
        DEFAULT_APP, max_length=200, description="Serve application whose supervisor runs it."
    )
    model: str | None = Field(None, description="Model whose concurrency bound the job counts in.")
    request: dict[str, JsonValue] = Field(description="What was asked (images as store keys).")
    status: JobStatus = "queued"
    progress: Progress = Field(default_factory=Progress)
    result: dict[str, JsonValue] | None = None
    error: JobError | None = None
    attempts: int = Field(0, ge=0, description="How many times work on it was started.")
    created_at: AwareDatetime = Field(default_factory=now)
    updated_at: AwareDatetime = Field(default_factory=now)
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    lease: Lease | None = None
    idempotency_key: str | None = Field(None, max_length=255)
    callback_url: HttpUrl | None = None
    deliveries: list[Delivery] = Field(default_factory=list)
    cancel_requested: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def moved(self, **update: Any) -> Job:
        """A copy with `update` applied and `updated_at` set; `StatusWentBackwards` if barred."""
        status = update.get("status", self.status)
        if status != self.status and (self.terminal or _RANK[status] < _RANK[self.status]):
            raise StatusWentBackwards(f"job {self.id}: {self.status} -> {status}")
        stamp = now()
        if status in TERMINAL and self.finished_at is None:
            update.setdefault("finished_at", stamp)
            update.setdefault("lease", None)
        return self.model_copy(update={**update, "updated_at": stamp})

    def leased(self, holder: str, ttl_s: float) -> Job:
        """A copy held by `holder` for `ttl_s` seconds from now."""
        return self.moved(lease=Lease(holder=holder, expires_at=now() + timedelta(seconds=ttl_s)))


def is_job_id(value: str) -> bool:
    return bool(_ID.match(value))
