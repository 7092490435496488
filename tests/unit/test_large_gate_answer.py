"""A large render whose text fails the gate is answered like a one-call render: 422, not 500.

`serve.routes.renders.finished` turns an ended job into the answer a waiting client
gets; before one render path existed, a waited-on large render answered 500 here.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from core.config import StorageConfig
from core.errors import TypographyGateFailed
from core.jobs.model import Job, JobError
from core.records import RunRecord, RunRegistry, new_run_id
from core.store import open_store
from serve.routes.renders import finished

REPORT = {"passed": False, "boxes": [], "stray_text": None}


def _ctx(tmp_path):
    store = open_store(StorageConfig(kind="local", path=tmp_path))
    return SimpleNamespace(store=store, registry=RunRegistry(store))


def test_a_waited_large_render_that_failed_its_gate_is_a_422_with_the_review_image(tmp_path):
    ctx = _ctx(tmp_path)
    run_id = new_run_id()
    record = RunRecord(
        id=run_id,
        kind="hires",
        status="failed",
        model="quality",
        model_source="tiny:0",
        error="text_boxes[0] contrast (2.1 < 4.5)",
        outputs={"review_image": f"renders/{run_id}/image.png"},
        typography=REPORT,
    )
    ctx.registry.save(record)
    job = Job(
        id=run_id,
        kind="hires",
        request={},
        status="failed",
        error=JobError(code="gate_failed", message="text_boxes[0] contrast (2.1 < 4.5)"),
    )
    with pytest.raises(TypographyGateFailed) as caught:
        asyncio.run(finished(ctx, job, request=None))
    error = caught.value
    assert error.status_code == 422 and error.field == "text_boxes"
    assert error.review_image == f"renders/{run_id}/image.png" and run_id in str(error)


def test_any_other_failure_is_a_500_naming_the_job(tmp_path):
    ctx = _ctx(tmp_path)
    run_id = new_run_id()
    ctx.registry.save(
        RunRecord(id=run_id, kind="hires", status="failed", model="q", model_source="tiny:0")
    )
    job = Job(
        id=run_id,
        kind="hires",
        request={},
        status="failed",
        error=JobError(code="render_failed", message="tile r0c1 failed after 3 attempts"),
    )
    answer = asyncio.run(finished(ctx, job, request=None))
    assert answer.status_code == 500
    assert f"job {run_id} failed: tile r0c1 failed after 3 attempts".encode() in answer.body
