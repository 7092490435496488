"""The jobs page's previews: the job's own owner only, polled while running or just ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from core.jobs.model import Job
from core.largeformat.row_preview import JobPreview
from core.store import LocalStore
from serve.ui import previews

JOB_ID = "20261202-120000-000000-0000abcd"


def _job(**fields) -> Job:
    return Job(**{"id": JOB_ID, "kind": "hires", "owner": "acme", "request": {}} | fields)


def test_a_preview_is_shown_only_when_its_note_carries_the_jobs_owner(tmp_path):
    store = LocalStore(tmp_path)
    assert previews.preview_note(store, _job()) is None  # none written yet
    JobPreview(store, JOB_ID, owner="acme").canvas(64, 32)(0, np.zeros((32, 64, 3), np.uint8))
    note = previews.preview_note(store, _job())
    assert note == {
        "width": 64,
        "height": 32,
        "rows_done": 32,
        "preview_width": 64,
        "preview_height": 32,
        "preview_rows": 32,
        "version": "1-32",
    }
    assert previews.preview_image(store, _job()).startswith(b"\x89PNG")
    assert previews.preview_note(store, _job(owner="globex")) is None
    assert previews.preview_image(store, _job(owner="globex")) is None
    assert previews.preview_note(store, _job(kind="pipeline")) is None


def test_previews_are_polled_for_running_jobs_and_those_just_ended():
    now = datetime.now(UTC)
    assert previews.recent(_job(status="running"))
    assert previews.recent(_job(status="done", finished_at=now - timedelta(seconds=5)))
    assert not previews.recent(_job(status="done", finished_at=now - timedelta(minutes=5)))
