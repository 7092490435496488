"""The supervisor's loop with fake work, no Ray: bounds, adoption, retries, cancel, webhooks."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from core import telemetry
from core.config import StorageConfig
from core.errors import JobFailed
from core.jobs.model import Job, Lease, Progress, now
from core.jobs.store import JobStore
from core.jobs.supervision import Holder, JobOutcome, Supervision
from core.jobs.webhooks import SIGNATURE_HEADER, sign, verify
from core.jobs_config import JobsConfig
from core.records import new_run_id
from core.store import open_store
from tests.unit.test_telemetry import Recorder

SETTINGS = JobsConfig(
    max_running_per_model=2, lease_ttl_s=5, poll_interval_s=0.01, webhook_backoff_s=0.01
)


def _job(model: str = "quality", **fields) -> Job:
    return Job(id=new_run_id(), kind="hires", model=model, request={}, **fields)


class FakeWork:
    """Work that waits for a release; counts how many run at once; can fail or crash."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.most = 0
        self.started: list[str] = []
        self.crash_once: set[str] = set()
        self.fail: set[str] = set()

    async def __call__(self, job: Job, report) -> JobOutcome:
        self.started.append(job.id)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            report(Progress(done=1, total=2, phase="tiles"))
            await self.release.wait()
            if job.id in self.crash_once:
                self.crash_once.discard(job.id)
                raise ConnectionError("the router died")
            if job.id in self.fail:
                raise JobFailed(job.id, "tile r0c0 failed after 3 attempts")
            return JobOutcome("done", {"image": f"renders/{job.id}.png"})
        finally:
            self.running -= 1


def _supervision(tmp_path, work, holder: Holder | None = None, **settings):
    holder = holder or Holder("cluster-a", "one")
    jobs = JobStore(open_store(StorageConfig(kind="local", path=tmp_path)))
    return Supervision(jobs, SETTINGS.model_copy(update=settings), holder, {"hires": work})


async def _until(predicate, what: str, timeout_s: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_jobs_run_oldest_first_within_the_per_model_bound(tmp_path):
    async def scenario():
        work = FakeWork()
        sup = _supervision(tmp_path, work)
        made = [sup.jobs.save(_job()) for _ in range(5)] + [sup.jobs.save(_job("fast"))]
        loop = asyncio.create_task(sup.run_forever())
        await _until(lambda: len(work.started) == 3, "two quality jobs and the fast one")
        assert work.started[:2] == [made[0].id, made[1].id] and made[5].id in work.started
        tiles = Progress(done=1, total=2, phase="tiles")
        await _until(lambda: sup.jobs.get(made[0].id).progress == tiles, "progress in the store")
        work.release.set()
        await _until(lambda: all(sup.jobs.get(j.id).status == "done" for j in made), "all done")
        loop.cancel()
        assert work.most == 3  # 2 quality + 1 fast at most
        done = sup.jobs.get(made[4].id)
        assert done.result == {"image": f"renders/{made[4].id}.png"} and done.attempts == 1
        assert done.progress.phase == "done"

    asyncio.run(scenario())


def test_a_crashed_attempt_is_started_again_and_a_failure_is_final(tmp_path):
    async def scenario():
        work = FakeWork()
        sup = _supervision(tmp_path, work)
        crashing, failing = sup.jobs.save(_job()), sup.jobs.save(_job())
        work.crash_once.add(crashing.id)
        work.fail.add(failing.id)
        work.release.set()
        loop = asyncio.create_task(sup.run_forever())
        await _until(lambda: sup.jobs.get(crashing.id).status == "done", "the retried job")
        await _until(lambda: sup.jobs.get(failing.id).terminal, "the failing job")
        loop.cancel()
        assert sup.jobs.get(crashing.id).attempts == 2
        failed = sup.jobs.get(failing.id)
        assert failed.status == "failed" and failed.error.code == "render_failed"
        assert "tile r0c0 failed" in failed.error.message and failed.attempts == 1

    asyncio.run(scenario())


def test_applications_sharing_a_store_run_only_their_own_jobs(tmp_path):
    """A second Serve application on the same store (another config) never takes our jobs."""

    async def scenario():
        ours, theirs = FakeWork(), FakeWork()
        ours.release.set()
        theirs.release.set()
        main = _supervision(tmp_path, ours)
        jobs = main.jobs
        other = Supervision(jobs, SETTINGS, Holder("cluster-b", "one"), {"hires": theirs}, app="bp")
        mine = [jobs.save(_job()) for _ in range(3)]
        foreign = jobs.save(_job(app="bp"))
        loops = [asyncio.create_task(s.run_forever()) for s in (main, other)]
        await _until(
            lambda: all(jobs.get(j.id).status == "done" for j in [*mine, foreign]), "all done"
        )
        for loop in loops:
            loop.cancel()
        assert sorted(ours.started) == sorted(j.id for j in mine)
        assert theirs.started == [foreign.id]
        assert jobs.get(mine[0].id).app == "render-cluster"

    asyncio.run(scenario())


def test_queue_depth_and_job_durations_are_measured(tmp_path):
    recorder = Recorder()
    telemetry.use_backend(recorder)
    try:

        async def scenario():
            work = FakeWork()
            sup = _supervision(tmp_path, work, max_running_per_model=1)
            made = [sup.jobs.save(_job()) for _ in range(3)]
            loop = asyncio.create_task(sup.run_forever())
            await _until(lambda: len(work.started) == 1, "the first job")
            await _until(lambda: recorder.last_gauge("quality") == 2, "two queued behind it")
            work.release.set()
            await _until(lambda: all(sup.jobs.get(j.id).status == "done" for j in made), "done")
            await _until(lambda: recorder.last_gauge("quality") == 0, "an empty queue")
            loop.cancel()

        asyncio.run(scenario())
    finally:
        telemetry.use_backend(None)
    durations = [v for n, v, t in recorder.seen if n == "rendercluster_job_duration_seconds"]
    assert len(durations) == 3 and all(d >= 0 for d in durations)


def test_orphans_are_adopted_by_lease_and_by_a_dead_incarnation(tmp_path):
    async def scenario():
        work = FakeWork()
        work.release.set()
        sup = _supervision(tmp_path, work, holder=Holder("cluster-a", "two"))
        later = now() + timedelta(seconds=60)
        ours = _job(
            status="running", attempts=1, lease=Lease(holder="cluster-a/one", expires_at=later)
        )
        expired = _job(
            status="running", attempts=1, lease=Lease(holder="cluster-b/x", expires_at=now())
        )
        alive = _job(
            status="running", attempts=1, lease=Lease(holder="cluster-b/x", expires_at=later)
        )
        for job in (ours, expired, alive):
            sup.jobs.save(job)
        await sup.tick()
        await _until(lambda: sup.jobs.get(expired.id).status == "done", "adopted jobs")
        assert sup.jobs.get(ours.id).status == "done" and sup.jobs.get(ours.id).attempts == 2
        assert sup.jobs.get(alive.id).status == "running"  # another live cluster holds it
        assert alive.id not in work.started

    asyncio.run(scenario())


def test_a_job_out_of_attempts_fails_instead_of_looping(tmp_path):
    async def scenario():
        sup = _supervision(tmp_path, FakeWork(), max_attempts=2)
        job = sup.jobs.save(_job(status="running", attempts=2))
        await sup.tick()
        failed = sup.jobs.get(job.id)
        assert failed.status == "failed" and failed.error.code == "too_many_attempts"

    asyncio.run(scenario())


def test_cancel_stops_a_running_job_and_a_queued_one(tmp_path):
    async def scenario():
        work = FakeWork()
        sup = _supervision(tmp_path, work, max_running_per_model=1)
        running, queued = sup.jobs.save(_job()), sup.jobs.save(_job())
        loop = asyncio.create_task(sup.run_forever())
        await _until(lambda: work.running == 1, "the first job to start")
        assert (await sup.cancel(queued.id)).status == "cancelled"
        assert (await sup.cancel(running.id)).status == "cancelled"
        await asyncio.sleep(0.1)
        loop.cancel()
        assert work.started == [running.id] and work.running == 0
        stopped = sup.jobs.get(running.id)
        assert stopped.error.code == "cancelled" and stopped.result is None

    asyncio.run(scenario())


def test_a_waiting_job_holds_nothing_until_it_is_resumed(tmp_path):
    async def scenario():
        outcomes = [JobOutcome("awaiting_approval", {"stage": "final"}), JobOutcome("done", {})]

        async def pipeline(job, report):
            return outcomes.pop(0)

        jobs = JobStore(open_store(StorageConfig(kind="local", path=tmp_path)))
        sup = Supervision(jobs, SETTINGS, Holder("c", "1"), {"hires": pipeline})
        job = jobs.save(_job())
        await sup.tick()
        await _until(lambda: jobs.get(job.id).status == "awaiting_approval", "the gate")
        assert not sup.tasks and jobs.get(job.id).lease is None
        await sup.tick()
        assert jobs.get(job.id).status == "awaiting_approval"  # nothing adopts a waiting job
        await sup.resume(job.id)
        await sup.tick()
        await _until(lambda: jobs.get(job.id).status == "done", "the approved job")

    asyncio.run(scenario())


class Receiver(BaseHTTPRequestHandler):
    answers: list[int] = []
    received: list[tuple[bytes, str]] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((body, self.headers[SIGNATURE_HEADER]))
        self.send_response(Receiver.answers.pop(0) if Receiver.answers else 200)
        self.end_headers()

    def log_message(self, *args):
        return None


@pytest.fixture
def receiver():
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Receiver.answers, Receiver.received = [500], []
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_a_finished_job_is_delivered_signed_after_a_failed_attempt(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv(SETTINGS.webhook_secret_env, "s3cret")

    async def scenario():
        work = FakeWork()
        work.release.set()
        sup = _supervision(tmp_path, work)
        job = sup.jobs.save(_job(callback_url=receiver))
        loop = asyncio.create_task(sup.run_forever())
        await _until(lambda: len(sup.jobs.get(job.id).deliveries) == 2, "two deliveries")
        loop.cancel()
        return sup.jobs.get(job.id)

    job = asyncio.run(scenario())
    assert [(d.attempt, d.status_code) for d in job.deliveries] == [(1, 500), (2, 200)]
    body, signature = Receiver.received[-1]
    assert verify(body, "s3cret", signature) and signature == sign(body, "s3cret")
    assert not verify(body, "wrong", signature)
    sent = json.loads(body)
    assert sent["id"] == job.id and sent["status"] == "done" and "lease" not in sent
