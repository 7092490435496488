"""The job record and its store: monotonic statuses, leases, pages, idempotency keys."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from core.config import StorageConfig
from core.errors import NotFoundError, RequestError
from core.jobs.model import Job, Lease, StatusWentBackwards, now
from core.jobs.requests import restore, stash
from core.jobs.store import HELD_FOR_S, IdempotencyConflict, IdempotencyInProgress, JobStore
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
    assert jobs.reserve("key-1", None, body, holder="first") is None
    jobs.claim("key-1", None, body, "20260101-000000-000000-00000001")
    assert jobs.reserve("key-1", None, dict(body), "again") == "20260101-000000-000000-00000001"
    with pytest.raises(IdempotencyConflict, match="'key-1' was already used") as caught:
        jobs.reserve("key-1", None, {**body, "width": 4096}, "other")
    assert caught.value.status_code == 409 and caught.value.field == "Idempotency-Key"
    assert jobs.reserve("key-1", "other-tenant", body, "theirs") is None  # keys are per tenant
    jobs.release("key-1", None, "first")  # claimed: nothing to let go
    assert jobs.reserve("key-1", None, body, "later") == "20260101-000000-000000-00000001"


def test_a_held_key_is_refused_until_its_holder_claims_or_releases_it(jobs, monkeypatch):
    body = {"prompt": "a kite"}
    assert jobs.reserve("key-2", None, body, "first") is None
    with pytest.raises(IdempotencyInProgress, match="still in progress") as caught:
        jobs.reserve("key-2", None, body, "second")
    assert caught.value.status_code == 409 and caught.value.retry_after_s == 1
    with pytest.raises(IdempotencyConflict):  # another body is refused even while held
        jobs.reserve("key-2", None, {"prompt": "a boat"}, "third")
    jobs.release("key-2", None, "second")  # not its holder: changes nothing
    with pytest.raises(IdempotencyInProgress):
        jobs.reserve("key-2", None, body, "second")
    jobs.release("key-2", None, "first")  # created nothing: the key is free again
    assert jobs.reserve("key-2", None, body, "second") is None
    later = time.time() + HELD_FOR_S + 1  # its holder died: the key is taken over
    monkeypatch.setattr("core.jobs.store.time.time", lambda: later)
    assert jobs.reserve("key-2", None, body, "third") is None
    with pytest.raises(IdempotencyInProgress):
        jobs.reserve("key-2", None, body, "fourth")


def test_a_renewed_hold_outlives_its_first_term_and_only_its_holder_renews_it(jobs, monkeypatch):
    body, now = {"prompt": "a kite"}, [time.time()]
    monkeypatch.setattr("core.jobs.store.time.time", lambda: now[0])
    assert jobs.reserve("key-5", None, body, "long") is None
    now[0] += HELD_FOR_S - 1
    jobs.renew("key-5", None, "long")  # still rendering
    jobs.renew("key-5", None, "someone else")  # not its holder: changes nothing
    now[0] += HELD_FOR_S - 1  # past the first term, within the renewed one
    with pytest.raises(IdempotencyInProgress):
        jobs.reserve("key-5", None, body, "retry")
    jobs.claim("key-5", None, body, "run-5")
    jobs.renew("key-5", None, "long")  # claimed: a late renewal keeps the claim
    now[0] += 10 * HELD_FOR_S
    assert jobs.reserve("key-5", None, body, "retry") == "run-5"


def test_of_requests_racing_with_one_key_one_holds_it(jobs):
    body, racers = {"prompt": "a kite"}, 8
    start = threading.Barrier(racers)

    def race(n: int) -> str:
        start.wait(timeout=30)
        try:
            return "held" if jobs.reserve("key-3", None, body, f"r{n}") is None else "replayed"
        except IdempotencyInProgress:
            return "refused"

    with ThreadPoolExecutor(racers) as pool:
        outcomes = list(pool.map(race, range(racers)))
    assert sorted(outcomes) == ["held"] + ["refused"] * (racers - 1)


def test_of_requests_finding_one_dead_hold_at_once_one_takes_it_over(jobs, monkeypatch):
    body, racers = {"prompt": "a kite"}, 8
    assert jobs.reserve("key-4", None, body, "died") is None
    later = time.time() + HELD_FOR_S + 1
    monkeypatch.setattr("core.jobs.store.time.time", lambda: later)
    all_read, first_read = threading.Barrier(racers), threading.local()
    read = jobs.store.get_bytes

    def read_together(key: str) -> bytes:  # every racer sees the dead hold before any acts
        data = read(key)
        if not getattr(first_read, "done", False):
            first_read.done = True
            all_read.wait(timeout=30)
        return data

    monkeypatch.setattr(jobs.store, "get_bytes", read_together)

    def race(n: int) -> str:
        try:
            return "held" if jobs.reserve("key-4", None, body, f"r{n}") is None else "replayed"
        except IdempotencyInProgress:
            return "refused"

    with ThreadPoolExecutor(racers) as pool:
        outcomes = list(pool.map(race, range(racers)))
    assert sorted(outcomes) == ["held"] + ["refused"] * (racers - 1)


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
