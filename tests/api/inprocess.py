"""The whole HTTP API in-process (no Ray): the real routes over fakes of the Ray pieces.

The model call answers with a flat image; the job supervisor, campaign runner
and capacity checks are fakes that act on the store the way the real ones do (a
cancel marks the job cancelled), so every route answers as it would in a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.config import ClusterConfig
from core.jobs.model import Job
from core.schemas import GenerateRequest, GenerateResult
from core.store import open_store
from serve import gate, ingress  # noqa: F401 - ingress registers every route on `api`
from serve.api_app import IngressContext, api
from serve.auth import ApiKeys
from serve.render_service import RenderService


async def flat_render(model_name: str, request: GenerateRequest) -> GenerateResult:
    image = np.full((request.height, request.width, 3), 128, dtype=np.uint8)
    return GenerateResult(image, request.seed, 0.001, 1, "fake-replica", ["0"])


class _Remote:
    def __init__(self, fn):
        self.remote = fn


class FakeSupervisor:
    """Cancels and resumes in the store, as the one writer of running jobs does."""

    def __init__(self, jobs):
        self.jobs = jobs
        self.nudge = _Remote(lambda: None)
        self.cancel = _Remote(self._cancel)
        self.resume = _Remote(self._resume)

    async def _cancel(self, job_id: str, code: str, message: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        done = job.model_copy(update={"status": "cancelled"})
        self.jobs.save(done)
        return done.model_dump(mode="json")

    async def _resume(self, job_id: str) -> dict[str, Any]:
        job: Job = self.jobs.get(job_id)
        return job.model_dump(mode="json")


class FakeCapacity:
    async def deployments(self) -> dict[str, Any]:
        return {}  # no replica runs: /v1/models asks none what it loaded

    async def placement_problem(self, model_name: str) -> str | None:
        return None

    async def not_ready(self) -> dict[str, str]:
        return {}


class FakeDispatcher:
    in_flight: dict[str, int] = {}


def config_for(root: Path, auth: dict | None = None, **extra: Any) -> ClusterConfig:
    data: dict[str, Any] = {
        "models": {"tiny": {"source": "tiny:0", "native_resolution": 64}},
        "storage": {"kind": "local", "path": str(root)},
        "auth": auth or {},
        "pipelines": {
            "two": {"stages": [{"name": "base", "model": "tiny", "width": 64, "height": 64}]}
        },
    }
    data.update(extra)
    return ClusterConfig.model_validate(data)


def install(config: ClusterConfig, monkeypatch: pytest.MonkeyPatch) -> RenderService:
    """Point the module-level `api` at an in-process context for `config`."""
    store = open_store(config.storage)
    renders = RenderService(config, store, flat_render)
    renders.jobs.capacity = FakeCapacity()
    fake = FakeSupervisor(renders.jobs.jobs)
    monkeypatch.setattr("serve.jobs.supervisor", lambda app_name=None: fake)
    monkeypatch.setattr("serve.routes.campaigns.runner_alive", lambda name: False)
    monkeypatch.setattr("serve.routes.campaigns.start_runner", lambda *a, **k: None)
    monkeypatch.setattr("serve.routes.campaigns.runner_alive", lambda name: False)
    monkeypatch.setattr(
        "serve.routes.system.deployment_status",
        lambda in_flight, names: {"application": "x", "status": "RUNNING", "deployments": []},
    )
    monkeypatch.setattr(gate.SETTINGS, "api_keys", ApiKeys(config.auth))
    monkeypatch.setattr(gate.SETTINGS, "max_body_bytes", config.limits.max_body_bytes)
    context = IngressContext(
        config=config,
        store=store,
        registry=renders.registry,
        dispatcher=FakeDispatcher(),  # type: ignore[arg-type]
        renders=renders,
        app_name="render-cluster",
    )
    monkeypatch.setattr(api.state, "context", context, raising=False)
    monkeypatch.setattr(api.state, "pipeline_runner", None, raising=False)
    return renders
