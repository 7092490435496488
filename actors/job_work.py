"""What the job supervisor does for each kind of job, on the running Serve application.

- `hires`: a large-format render on a tile router of its own, its finished tiles
  checkpointed so that a new attempt renders only what is missing;
- `upscale`: a tiled upscale, checkpointed the same way;
- `pipeline`: a pipeline run advanced to its next approval gate or its end (the
  stage cache makes a new attempt skip finished stages); at a gate the work ends
  and the job waits in the store, holding no process;
- `campaign`: the campaign's detached runner started (or found) and followed.

Every piece reports progress through the supervisor's callback, and keeps the
run record of what it renders in step with the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

import ray

from actors.campaign_runner import CAMPAIGN_NAMESPACE, runner_alive, runner_name, start_runner
from actors.pipeline_runner import PipelineRunner
from actors.render_calls import ModelCalls, RenderCalls, ServeTarget, default_spool_dir
from actors.router_pool import RouterPool
from actors.stage_renderers import ServeStageRenderer
from core import telemetry, tenants
from core.campaign import Manifest, load_status
from core.campaign.plan import manifest_key
from core.config import APP_NAME, ClusterConfig
from core.errors import JobFailed, NotFoundError
from core.jobs.model import Job, Progress
from core.jobs.requests import restore
from core.jobs.supervision import JobOutcome, Report, Work
from core.records import RunRecord, RunRegistry
from core.render_records import RecordLabels, upscale_record
from core.schemas import LargeRenderJob, RenderRequestBody, UpscaleJob, UpscaleRequestBody
from core.store import ArtifactStore
from core.validation import resolve_upscale

__all__ = ["JOBS_NAMESPACE", "JobWork", "PROGRESS_POLL_S", "router_pool"]

PROGRESS_POLL_S = 0.5
JOBS_NAMESPACE = "render-cluster-jobs"
ROUTER_REFILL_DELAY_S = 2.0  # a taken router's replacement starts once its job is under way


def router_pool(config: ClusterConfig, app_name: str, pool: RouterPool | None = None) -> RouterPool:
    """The warm routers of `app_name`'s jobs under `config` (`pool`, reset, when given)."""
    models = ModelCalls(ServeTarget(config.storage, app_name, default_spool_dir()))

    def start(name: str) -> Any:
        router = models.start_router(name, JOBS_NAMESPACE)
        router.prepare.remote(list(config.models))  # open the handles while it waits
        return router

    if pool is None:
        return RouterPool(start, config.jobs.warm_routers, refill_delay_s=ROUTER_REFILL_DELAY_S)
    pool.reset(start, config.jobs.warm_routers)
    return pool


class JobWork:
    """The `Work` of every job kind (see the module)."""

    def __init__(
        self,
        config: ClusterConfig,
        store: ArtifactStore,
        app_name: str = APP_NAME,
        routers: RouterPool | None = None,
    ):
        """`routers`: the warm routers large jobs take (default: a new router per job)."""
        self.config = config
        self.routers = routers
        self.store = store
        self.app_name = app_name
        self.registry = RunRegistry(store)
        target = ServeTarget(config.storage, app_name, default_spool_dir())
        self.models = ModelCalls(target)
        self.calls = RenderCalls(config, self.registry, self.models)
        self.pipelines = PipelineRunner(
            config, store, ServeStageRenderer(config.storage, app_name), self.registry
        )

    def kinds(self) -> dict[str, Work]:
        return {
            "hires": self.hires,
            "upscale": self.upscale,
            "pipeline": self.pipeline,
            "campaign": self.campaign,
        }

    # -- large renders and upscales --------------------------------------------------

    async def hires(self, job: Job, report: Report) -> JobOutcome:
        body = RenderRequestBody.model_validate(restore(self.store, job.request))
        output_key = job.request.get("output_key")
        spec, record = await asyncio.to_thread(
            self.calls.large_job, body, job.id, output_key, RecordLabels()
        )
        return await self._large(job, dataclasses.replace(spec, checkpoint=True), record, report)

    async def upscale(self, job: Job, report: Report) -> JobOutcome:
        body = UpscaleRequestBody.model_validate(restore(self.store, job.request))
        output_key = str(job.request["output_key"])
        spec, model = await asyncio.to_thread(
            resolve_upscale, body, self.config, job.id, output_key
        )
        record = upscale_record(spec, model)
        return await self._large(job, dataclasses.replace(spec, checkpoint=True), record, report)

    async def _large(
        self, job: Job, spec: LargeRenderJob | UpscaleJob, record: RunRecord, report: Report
    ) -> JobOutcome:
        spec = dataclasses.replace(spec, preview=True, owner=job.owner)  # for /ui/jobs
        # the record is made again here, outside any request: it carries the job's owner
        running = record.model_copy(update={"status": "running", "owner": job.owner})
        await asyncio.to_thread(self.registry.save, running)
        router = self.routers.take() if self.routers is not None else self.models.start_router()
        follower = asyncio.create_task(_follow_router(router, report))
        try:
            final = await self.calls.finish_large(running, spec, router)
        except JobFailed as exc:
            await self._record_end(running, "failed", exc.reason)
            raise
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                ray.kill(router, no_restart=True)
            await self._record_end(running, "cancelled", "cancelled")
            raise
        finally:
            follower.cancel()
        result = {
            "run_id": final.id,
            "image": final.outputs["image"],
            "metrics": final.metrics,
            "timings": final.timings,
        }
        if "hires_upscaler" in final.params:  # what upscaled a hires render's base
            result["hires_upscaler"] = final.params["hires_upscaler"]
        return JobOutcome("done", result)

    async def _record_end(self, record: RunRecord, status: str, error: str) -> None:
        ended = record.model_copy(update={"status": status, "error": error})
        await asyncio.to_thread(self.registry.save, ended)
        telemetry.count_ended_render(ended)

    # -- pipeline runs -----------------------------------------------------------------

    async def pipeline(self, job: Job, report: Report) -> JobOutcome:
        tenants.current_tenant.set(job.owner)  # this task's context: stage records' tenant
        run = await self.pipelines.advance(job.id)
        stages = len(self.config.pipelines[str(run.pipeline)].stages) if run.pipeline else 0
        finished = len(self.pipelines.stage_records(run.id))
        report(Progress(done=finished, total=stages, phase=run.status))
        result = {
            "run_id": run.id,
            **({"image": run.outputs["image"]} if "image" in run.outputs else {}),
        }
        if run.status in ("done", "awaiting_approval"):
            return JobOutcome(run.status, result)
        raise JobFailed(run.id, run.error or f"pipeline run ended {run.status}")

    # -- campaigns ---------------------------------------------------------------------

    async def campaign(self, job: Job, report: Report) -> JobOutcome:
        name = str(job.request["campaign"])
        try:
            while True:
                if not await asyncio.to_thread(runner_alive, name):
                    status = await asyncio.to_thread(_campaign_status, self.store, name)
                    if status is not None and status.state == "finished":
                        return JobOutcome("done", _campaign_result(status))
                    await self._start_campaign(job, name)
                status = await asyncio.to_thread(_campaign_status, self.store, name)
                if status is not None:
                    report(
                        Progress(
                            done=status.done + status.failed, total=status.total, phase=status.state
                        )
                    )
                    if status.state == "finished":
                        return JobOutcome("done", _campaign_result(status))
                await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                ray.kill(
                    ray.get_actor(runner_name(name), namespace=CAMPAIGN_NAMESPACE), no_restart=True
                )
            raise

    async def _start_campaign(self, job: Job, name: str) -> None:
        manifest = Manifest.model_validate_json(
            await asyncio.to_thread(self.store.get_bytes, manifest_key(name))
        )
        settings: dict[str, Any] = job.request.get("settings") or {}
        with contextlib.suppress(ValueError):  # started a moment ago by someone else
            await asyncio.to_thread(start_runner, self.config, manifest, self.app_name, **settings)


async def _follow_router(router: Any, report: Report) -> None:
    """Report the router's progress until cancelled (or the router is gone)."""
    with contextlib.suppress(Exception):
        while True:
            progress = await router.progress.remote()
            report(
                Progress(done=progress["done"], total=progress["total"], phase=progress["phase"])
            )
            await asyncio.sleep(PROGRESS_POLL_S)


def _campaign_status(store: ArtifactStore, name: str):
    try:
        return load_status(store, name)
    except NotFoundError:
        return None


def _campaign_result(status) -> dict[str, Any]:
    return {
        "campaign": status.campaign,
        "done": status.done,
        "failed": status.failed,
        "total": status.total,
    }
