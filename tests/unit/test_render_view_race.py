"""`GET /v1/renders/{id}` while a job settles: "done" always comes with its result.

A large render's worker saves the final record, then settles the job. A view that read
the record before the job could see the job "done" beside the record still "running",
and answer "done" without a result (a flaky integration test caught it).
"""

from __future__ import annotations

import asyncio

from core.config import ClusterConfig, StorageConfig
from core.jobs.model import Job
from core.records import RunRecord, new_run_id
from core.store import open_store
from serve.render_service import RenderService


def _service(tmp_path) -> RenderService:
    config = ClusterConfig.model_validate(
        {
            "models": {"quality": {"source": "tiny:0"}},
            "storage": StorageConfig(kind="local", path=tmp_path).model_dump(),
        }
    )
    return RenderService(config, open_store(config.storage), None)


def _running(service: RenderService) -> RunRecord:
    """A hires run saved as running."""
    record = RunRecord(
        id=new_run_id(), kind="hires", status="running", model="quality", model_source="tiny:0"
    )
    service.registry.save(record)
    return record


def test_a_job_that_settles_between_the_two_reads_is_shown_with_its_result(tmp_path):
    service = _service(tmp_path)
    running = _running(service)
    run_id = running.id
    done = running.model_copy(
        update={"status": "done", "outputs": {"image": f"renders/{run_id}/image.png"}}
    )

    async def worker_finishes_then_find(job_id: str) -> Job:
        service.registry.save(done)  # the worker's two writes land between the view's reads
        return Job(id=job_id, kind="hires", request={}, status="done")

    service.jobs.find = worker_finishes_then_find
    view = asyncio.run(service.job_view(run_id, "http://127.0.0.1:1"))
    assert view["status"] == "done"
    assert view["result"]["key"] == f"renders/{run_id}/image.png"


def test_a_running_job_has_no_result(tmp_path):
    service = _service(tmp_path)
    run_id = _running(service).id

    async def still_running(job_id: str) -> Job:
        return Job(id=job_id, kind="hires", request={}, status="running")

    service.jobs.find = still_running
    view = asyncio.run(service.job_view(run_id, "http://127.0.0.1:1"))
    assert view["status"] == "running" and "result" not in view
