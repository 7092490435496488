"""Progress: rate over a trailing window, ETA from it, and the status object in the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.campaign import CampaignProgress, ProgressTracker, compute_progress
from core.campaign.progress import load_status, save_status
from core.errors import NotFoundError
from core.store import ArtifactStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_rate_and_eta_from_finish_times():
    # 20 jobs resumed as done, then 30 finished in this run's first 60 s: 30/min.
    progress = compute_progress(
        "c",
        total=100,
        done=48,
        failed=2,
        in_flight=4,
        finished=[at(2 * i) for i in range(1, 31)],
        started_at=T0,
        now=at(60),
    )
    assert progress.renders_per_minute == pytest.approx(30.0)
    assert progress.pending == 100 - 48 - 2 - 4
    assert progress.eta_s == pytest.approx(50 / 0.5)  # 50 left at 0.5 per second


def test_the_rate_only_counts_the_trailing_window():
    old = [at(i) for i in range(600)]  # one per second for ten minutes...
    recent = [at(600 + 10 * i) for i in range(1, 31)]  # ...then one per 10 s for five
    progress = compute_progress(
        "c",
        total=2000,
        done=630,
        failed=0,
        in_flight=0,
        finished=old + recent,
        started_at=T0,
        now=at(900),
        window_s=300,
    )
    assert progress.renders_per_minute == pytest.approx(6.0)
    assert progress.eta_s == pytest.approx(1370 / 0.1)


def test_no_finish_yet_means_unknown_and_nothing_left_means_zero():
    waiting = compute_progress(
        "c", total=5, done=0, failed=0, in_flight=2, finished=[], started_at=T0, now=at(30)
    )
    assert (waiting.renders_per_minute, waiting.eta_s) == (None, None)
    stalled = compute_progress(
        "c", total=5, done=1, failed=0, in_flight=2, finished=[T0], started_at=T0, now=at(900)
    )
    assert (stalled.renders_per_minute, stalled.eta_s) == (0.0, None)
    over = compute_progress(
        "c", total=3, done=2, failed=1, in_flight=0, finished=[T0], started_at=T0, now=at(9)
    )
    assert over.eta_s == 0.0 and over.pending == 0
    with pytest.raises(ValueError, match=r"exceed total \(3\)"):
        compute_progress(
            "c", total=3, done=3, failed=1, in_flight=0, finished=[], started_at=T0, now=at(1)
        )


def test_the_tracker_counts_a_run_and_snapshots_it():
    now = [T0]
    tracker = ProgressTracker("c", total=10, done=4, clock=lambda: now[0])
    for _ in range(3):
        tracker.started()
    now[0] = at(30)
    tracker.finished(ok=True)
    tracker.will_retry()
    now[0] = at(60)
    tracker.finished(ok=False)
    snap = tracker.snapshot()
    assert (snap.done, snap.failed, snap.in_flight, snap.pending) == (5, 1, 0, 4)
    assert snap.renders_per_minute == pytest.approx(2.0)
    assert snap.eta_s == pytest.approx(4 / (2 / 60))
    assert tracker.snapshot(state="finished").state == "finished"


def test_status_round_trips_through_the_store(store: ArtifactStore):
    with pytest.raises(NotFoundError, match="no campaign 'c'"):
        load_status(store, "c")
    progress = compute_progress(
        "c", total=3, done=1, failed=0, in_flight=1, finished=[at(5)], started_at=T0, now=at(10)
    )
    assert save_status(store, progress) == "campaigns/c/status.json"
    loaded = load_status(store, "c")
    assert isinstance(loaded, CampaignProgress) and loaded == progress
