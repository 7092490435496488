"""Resume bookkeeping on both store backends: done jobs are skipped, nothing runs twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.campaign import (
    RenderJob,
    claim_run_id,
    done_keys,
    load_ledger,
    mark_done,
    mark_failed,
    pending_jobs,
    recover_finished,
)
from core.records import RunRecord, RunRegistry
from core.store import ArtifactStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_pending_excludes_exactly_the_done_jobs_once_each(store: ArtifactStore, jobs):
    assert pending_jobs(store, "spring-sale", jobs) == jobs
    done = jobs[3:10:2] + [jobs[23]]
    for job in done:
        mark_done(store, job, run_id=f"run-{job.key[:6]}", outputs={"image": f"img/{job.key}.png"})
    pending = pending_jobs(store, "spring-sale", jobs + jobs[:5])  # a repeated job is kept once
    assert pending == [job for job in jobs if job not in done]
    assert done_keys(store, "spring-sale") == {job.key for job in done}
    ledger = load_ledger(store, "spring-sale")
    assert ledger.done[done[0].key].outputs == {"image": f"img/{done[0].key}.png"}
    assert store.exists(f"campaigns/spring-sale/done/{done[0].key}.json")
    assert pending_jobs(store, "autumn", []) == []


def test_failures_count_attempts_and_clear_on_success(store: ArtifactStore, jobs):
    job, other = jobs[0], jobs[1]
    assert mark_failed(store, job, "CUDA out of memory", at=T0).attempts == 1
    second = mark_failed(store, job, "replica died", run_id="r1", at=T0)
    assert (second.attempts, second.error, second.run_id) == (2, "replica died", "r1")
    mark_failed(store, other, "boom")
    assert job in pending_jobs(store, "spring-sale", jobs)  # a re-run retries by default
    capped = pending_jobs(store, "spring-sale", jobs, max_attempts=2)
    assert job not in capped and other in capped and len(capped) == 23
    mark_done(store, job, "r1", {"image": "img/x.png"})
    ledger = load_ledger(store, "spring-sale")
    assert set(ledger.failed) == {other.key} and job.key in ledger.done
    assert not store.exists(f"campaigns/spring-sale/failed/{job.key}.json")


def test_jobs_of_another_campaign_are_refused(store: ArtifactStore, jobs):
    with pytest.raises(ValueError, match="spring-sale"):
        pending_jobs(store, "autumn", jobs)


def _render(store: ArtifactStore, registry: RunRegistry, job: RenderJob) -> RunRecord:
    """What a runner does for one job, minus the rendering itself."""
    run_id = claim_run_id(store, job)
    image = store.put_bytes(f"campaigns/{job.campaign}/renders/{job.key}.png", b"png")
    record = RunRecord(
        id=run_id,
        kind="campaign-item",
        status="done",
        model=job.model,
        model_source="tiny:0",
        prompt=str(job.request["prompt"]),
        campaign=job.campaign,
        params={"campaign_key": job.key},
        outputs={"image": image},
    )
    registry.save(record)
    return record


def test_a_runner_killed_between_record_and_ledger_resumes_without_duplicates(
    store: ArtifactStore, jobs
):
    registry = RunRegistry(store)
    rendered = []
    for job in pending_jobs(store, "spring-sale", jobs)[:10]:  # the first runner...
        record = _render(store, registry, job)
        rendered.append(job.key)
        if len(rendered) == 10:
            break  # ...is killed after saving the 10th record, before its ledger entry
        mark_done(store, job, record.id, dict(record.outputs))
    claimed_first = claim_run_id(store, jobs[9])

    recovered = recover_finished(store, jobs, registry)  # the second runner starts
    assert [entry.key for entry in recovered] == [jobs[9].key]
    assert recovered[0].run_id == claimed_first
    for job in pending_jobs(store, "spring-sale", jobs):
        record = _render(store, registry, job)
        rendered.append(job.key)
        mark_done(store, job, record.id, dict(record.outputs))

    assert sorted(rendered) == sorted(job.key for job in jobs)  # each rendered exactly once
    records = registry.list(campaign="spring-sale", limit=None)
    assert len(records) == 24
    assert sorted(str(r.params["campaign_key"]) for r in records) == sorted(j.key for j in jobs)
    assert pending_jobs(store, "spring-sale", jobs) == []


def test_a_retried_job_keeps_its_run_id_so_its_record_is_overwritten(store: ArtifactStore, jobs):
    registry = RunRegistry(store)
    job = jobs[0]
    first = _render(store, registry, job)
    mark_failed(store, job, "seam check failed", run_id=first.id)
    second = _render(store, registry, job)
    assert second.id == first.id
    assert len(registry.list(campaign="spring-sale", limit=None)) == 1
    assert recover_finished(store, jobs, registry)[0].key == job.key
