"""The job record and its store: monotonic statuses, leases, pages, idempotency keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.config import StorageConfig
from core.errors import NotFoundError, RequestError
from core.jobs.model import Job, Lease, StatusWentBackwards, now
from core.jobs.requests import restore, stash
from core.jobs.store import IdempotencyConflict, JobStore
from core.records import new_run_id
from core.store import open_store


@pytest.fixture
def jobs(tmp_path) -> JobStore:
    return JobStore(open_store(StorageConfig(kind="local", path=tmp_path)))


def _job(**fields) -> Job:
    base = {"id": new_run_id(), "kind": "hires", "model": "quality", "request": {"body": {}}}
    return Job(**(base | fields))


def test_statuses_move_forward_only():
    job = _job()
    running = job.moved(status="running")
    waiting = running.moved(status="awaiting_approval")
    assert waiting.moved(status="running").status == "running"  # approved: runs on
    with pytest.raises(StatusWentBackwards, match="running -> queued"):
        running.moved(status="queued")
    done = running.moved(status="done")
    assert done.finished_at is not None and done.lease is None
    for status in ("running", "failed", "cancelled"):
        with pytest.raises(StatusWentBackwards):
            done.moved(status=status)


def test_the_store_refuses_to_write_a_status_backwards(jobs):
    job = jobs.save(_job())
    jobs.save(job.moved(status="running").moved(status="cancelled"))
    with pytest.raises(StatusWentBackwards):
        jobs.save(job.moved(status="running"))
    assert jobs.get(job.id).status == "cancelled"


def test_leases_expire():
    job = _job().leased("cluster/a", ttl_s=60)
    assert not job.lease.expired()
    assert job.lease.expired(now() + timedelta(seconds=61))
    assert Lease(holder="x", expires_at=now() - timedelta(seconds=1)).expired()


def test_pages_filter_and_follow_the_cursor_newest_first(jobs):
    made = [jobs.save(_job(kind="upscale" if i % 3 == 0 else "hires")) for i in range(7)]
    newest_first = [job.id for job in reversed(made)]
    first = jobs.page(limit=3)
    second = jobs.page(cursor=first.next_cursor, limit=3)
    third = jobs.page(cursor=second.next_cursor, limit=3)
    listed = [job.id for page in (first, second, third) for job in page.jobs]
    assert listed == newest_first and third.next_cursor is None
    upscales = jobs.page(kind="upscale")
    assert [job.id for job in upscales.jobs] == [made[i].id for i in (6, 3, 0)]
    assert jobs.page(status="done").jobs == []
    with pytest.raises(RequestError, match="cursor"):
        jobs.page(cursor="not-an-id")


def test_another_tenants_job_is_not_found(jobs):
    job = jobs.save(_job(owner="acme"))
    assert jobs.get(job.id, owner="acme").id == job.id
    with pytest.raises(NotFoundError):
        jobs.get(job.id, owner="globex")


def test_an_idempotency_key_returns_what_it_created_and_refuses_another_body(jobs):
    body = {"prompt": "a kite", "width": 2048}
    assert jobs.claimed("key-1", None, body) is None
    jobs.claim("key-1", None, body, "20260101-000000-000000-00000001")
    assert jobs.claimed("key-1", None, dict(body)) == "20260101-000000-000000-00000001"
    with pytest.raises(IdempotencyConflict, match="'key-1' was already used") as caught:
        jobs.claimed("key-1", None, {**body, "width": 4096})
    assert caught.value.status_code == 409 and caught.value.field == "Idempotency-Key"
    assert jobs.claimed("key-1", "other-tenant", body) is None  # keys are per tenant


def test_uploads_are_kept_beside_the_job_not_in_it(jobs):
    body = {"prompt": "x", "base_image": "aGVsbG8="}
    request = stash(jobs.store, "20260101-000000-000000-00000002", body, ("base_image",))
    assert "base_image" not in request["body"]
    assert jobs.store.get_bytes(request["inputs"]["base_image"]) == b"hello"
    assert restore(jobs.store, request) == body


def test_only_unfinished_jobs_are_scanned(jobs):
    running = jobs.save(_job().moved(status="running"))
    ended = jobs.save(_job().moved(status="running").moved(status="done"))
    assert [job.id for job in jobs.unfinished()] == [running.id]
    assert jobs.store.list_keys("job-open/") == [f"job-open/{running.id}"]
    jobs.save(running.moved(status="failed"))
    assert jobs.unfinished() == [] and jobs.store.list_keys("job-open/") == []
    assert {job.id for job in jobs.page().jobs} == {running.id, ended.id}
