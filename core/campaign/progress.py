"""Live progress of a campaign: counts, throughput and ETA, saved as ``status.json``.

Throughput counts only what this run finished, within a trailing window, so
jobs done by an earlier run (resumed) never inflate it and a stall shows up
within the window. The runner saves a snapshot now and then; the API route
and ``rendercluster campaign status`` read the same object.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from core.campaign import layout
from core.errors import NotFoundError, StorageError
from core.store import ArtifactStore

__all__ = [
    "CampaignProgress",
    "CampaignState",
    "ProgressTracker",
    "compute_progress",
    "load_status",
    "save_status",
]

CampaignState = Literal["running", "finished", "stopped"]
DEFAULT_WINDOW_S = 300.0


class CampaignProgress(BaseModel):
    """Where a campaign stands; `pending` counts jobs not started or awaiting a retry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign: str = Field(description="Campaign name.")
    state: CampaignState = Field(description="running, finished, or stopped before the end.")
    total: int = Field(ge=0, description="Jobs in the campaign.")
    done: int = Field(ge=0, description="Jobs rendered and recorded (this run or earlier).")
    failed: int = Field(ge=0, description="Jobs given up on after their last attempt.")
    in_flight: int = Field(ge=0, description="Renders sent and not yet answered.")
    pending: int = Field(ge=0, description="Jobs neither finished nor in flight.")
    renders_per_minute: float | None = Field(
        None, ge=0, description="Jobs finished per minute lately (None before the first)."
    )
    eta_s: float | None = Field(
        None, ge=0, description="Seconds until every job is finished at that rate (None: unknown)."
    )
    started_at: AwareDatetime = Field(description="When this run started.")
    updated_at: AwareDatetime = Field(description="When these numbers were taken.")


def compute_progress(
    campaign: str,
    *,
    total: int,
    done: int,
    failed: int,
    in_flight: int,
    finished: Iterable[datetime],
    started_at: datetime,
    now: datetime,
    state: CampaignState = "running",
    window_s: float = DEFAULT_WINDOW_S,
) -> CampaignProgress:
    """The numbers at `now`, from the times this run finished jobs (done or given up).

    The rate is the finishes within the last `window_s` seconds (or since
    `started_at`, if later) over that span; the ETA is what remains over the rate.
    """
    if done + failed + in_flight > total:
        raise ValueError(
            f"done ({done}) + failed ({failed}) + in_flight ({in_flight}) exceed total ({total})"
        )
    since = max(started_at, now - timedelta(seconds=window_s))
    span_s = (now - since).total_seconds()
    times = list(finished)
    recent = sum(1 for at in times if since <= at <= now)
    rate = recent / span_s if times and span_s > 0 else None  # per second
    remaining = total - done - failed
    if remaining == 0:
        eta_s: float | None = 0.0
    else:
        eta_s = remaining / rate if rate else None
    return CampaignProgress(
        campaign=campaign,
        state=state,
        total=total,
        done=done,
        failed=failed,
        in_flight=in_flight,
        pending=remaining - in_flight,
        renders_per_minute=None if rate is None else rate * 60,
        eta_s=eta_s,
        started_at=started_at,
        updated_at=now,
    )


class ProgressTracker:
    """Counts one run's jobs as they start and finish; `snapshot` gives `CampaignProgress`."""

    def __init__(
        self,
        campaign: str,
        total: int,
        *,
        done: int = 0,
        failed: int = 0,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        """`done` and `failed` are what earlier runs already finished."""
        self.campaign = campaign
        self.total = total
        self.done = done
        self.failed = failed
        self.in_flight = 0
        self.window_s = window_s
        self._clock = clock
        self.started_at = clock()
        self._finished: deque[datetime] = deque()

    def started(self) -> None:
        """A render was sent."""
        self.in_flight += 1

    def finished(self, ok: bool) -> None:
        """A job ended: done, or (`ok` False) given up on."""
        self.in_flight -= 1
        if ok:
            self.done += 1
        else:
            self.failed += 1
        now = self._clock()
        self._finished.append(now)
        while self._finished[0] < now - timedelta(seconds=self.window_s):
            self._finished.popleft()

    def will_retry(self) -> None:
        """An attempt failed and its job goes back to pending."""
        self.in_flight -= 1

    def snapshot(self, state: CampaignState = "running") -> CampaignProgress:
        """The numbers now."""
        return compute_progress(
            self.campaign,
            total=self.total,
            done=self.done,
            failed=self.failed,
            in_flight=self.in_flight,
            finished=self._finished,
            started_at=self.started_at,
            now=self._clock(),
            state=state,
            window_s=self.window_s,
        )


def save_status(store: ArtifactStore, progress: CampaignProgress) -> str:
    """Write ``campaigns/<name>/status.json`` (atomically); return its key."""
    key = layout.status_key(progress.campaign)
    return store.put_bytes(key, progress.model_dump_json(indent=2).encode())


def load_status(store: ArtifactStore, campaign: str) -> CampaignProgress:
    """The last saved progress of `campaign`; `NotFoundError` if it never ran."""
    key = layout.status_key(campaign)
    try:
        data = store.get_bytes(key)
    except NotFoundError:
        raise NotFoundError("campaign", f"no campaign {campaign!r}") from None
    try:
        return CampaignProgress.model_validate_json(data)
    except ValidationError as exc:
        raise StorageError(
            key, f"not a valid campaign status ({exc.error_count()} errors)"
        ) from exc
