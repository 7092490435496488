"""`CampaignRunner`: one campaign's detached driver on the cluster, and its Serve renderer.

Three layers, Ray only in this one:

- `core.campaign.plan`: the manifest expanded into jobs and checked against the
  config and against what the runner can render, naming every problem before
  anything renders (a `ManifestError`).
- `core.campaign.loop.CampaignLoop`: the scheduling loop (bounded, resumable,
  recorded; see its module).
- `ServeJobRenderer` and the `CampaignRunner` actor: single and large renders
  through `actors.render_calls` (the path every render takes, text boxes and gate
  included), pipeline items through a `PipelineRunner`; one
  detached actor per campaign, named ``campaign-<name>``, that exits when its
  campaign is over (its numbers stay in the store).

Every job counts as one render in flight, whether it is one model call, a tiled
large-format job or a pipeline of stages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ray
from ray import serve

from actors import ray_metrics
from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import PipelineRequest
from actors.render_calls import ModelCalls, RenderCalls, ServeTarget, default_spool_dir
from actors.stage_renderers import ServeStageRenderer
from core import tenants
from core.campaign import Manifest, RenderJob, layout
from core.campaign.loop import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_IN_FLIGHT,
    CampaignLoop,
    LoopSettings,
)
from core.campaign.plan import (
    fit_pipeline,
    item_params,
    job_record,
    plan_campaign,
    render_key,
    request_body,
)
from core.config import APP_NAME, ClusterConfig, deployment_name
from core.config_file import config_from_dict
from core.errors import JobFailed, NotFoundError, TypographyGateFailed
from core.imaging import EXTENSIONS
from core.png_text import store_tagged_png
from core.record_metadata import record_metadata
from core.records import RunRecord, RunRegistry
from core.remote.record import total_cost
from core.render_records import RecordLabels
from core.store import ArtifactStore, open_store

__all__ = [
    "CAMPAIGN_NAMESPACE",
    "CampaignRunner",
    "ServeJobRenderer",
    "runner_alive",
    "runner_name",
    "start_runner",
]

CAMPAIGN_NAMESPACE = "render-cluster-jobs"


def runner_name(campaign: str) -> str:
    """Name of the campaign's runner actor (in `CAMPAIGN_NAMESPACE`)."""
    return f"campaign-{campaign}"


class ServeJobRenderer:
    """`render_job` on a running Serve application: stores the image, returns the record."""

    def __init__(
        self,
        config: ClusterConfig,
        store: ArtifactStore,
        app_name: str = APP_NAME,
        spool_dir: Path | None = None,
    ):
        """`config.storage` must name the store with an absolute path (routers open it)."""
        self.config = config
        self.store = store
        self.registry = RunRegistry(store)
        target = ServeTarget(config.storage, app_name, spool_dir or default_spool_dir())
        self.calls = RenderCalls(config, self.registry, ModelCalls(target))
        self.stages = ServeStageRenderer(config.storage, app_name, target.spool_dir)

    async def __call__(self, job: RenderJob, run_id: str) -> RunRecord:
        started = time.perf_counter()
        if job.pipeline is not None:
            record = await self._pipeline(job, run_id)
        else:
            record = await self._render(job, run_id)
        timings = {**record.timings, "total_s": round(time.perf_counter() - started, 4)}
        return record.model_copy(update={"timings": timings})

    async def _render(self, job: RenderJob, run_id: str) -> RunRecord:
        """A single or large item, through the path every render takes."""
        body = request_body(job)
        if job.large and body.mode == "auto":
            body = body.model_copy(update={"mode": "hires"})
        labels = RecordLabels("campaign-item", job.campaign, item_params(job))
        key = render_key(job, EXTENSIONS[body.format])
        outcome = await self.calls.render(body, run_id, key, labels)
        return outcome.record

    async def _pipeline(self, job: RenderJob, run_id: str) -> RunRecord:
        name = str(job.pipeline)
        pipeline = fit_pipeline(self.config, name, job.width, job.height)
        config = self.config.model_copy(
            update={"pipelines": {**self.config.pipelines, name: pipeline}}
        )
        runner = PipelineRunner(config, self.store, self.stages, self.registry)
        request = job.request
        run = await runner.run(
            name,
            PipelineRequest(
                prompt=str(request["prompt"]),
                negative_prompt=str(request.get("negative_prompt") or ""),
                seed=job.seed,
                text_boxes=request_body(job).text_boxes,
            ),
        )
        stages = runner.stage_records(run.id)
        last = stages[-1]
        if run.status != "done":
            review = last.outputs.get("review_image")
            if review is not None:
                raise TypographyGateFailed(str(run.error), run.id, review, last.typography)
            raise JobFailed(run.id, run.error or f"pipeline run ended {run.status}")
        source = run.outputs["image"]
        key = render_key(job, posixpath.splitext(source)[1].lstrip(".") or "png")
        record = job_record(
            job,
            self.config,
            run_id,
            model=run.model,
            model_source=run.model_source,
            model_revision=run.model_revision,
            family=run.family,
            parent_id=run.id,
            params={"mode": "pipeline", "stages": [stage.name for stage in pipeline.stages]},
            outputs={"image": key, "pipeline_image": source},
            typography=last.typography,
            cost_usd=total_cost([stage.cost_usd for stage in stages]),
        )
        # the item's file: the run's last stage output (PNG), tagged with the item's record
        metadata = record_metadata(record, last.params.get("scheduler"))
        await asyncio.to_thread(store_tagged_png, self.store, source, key, metadata)
        return record


def campaign_models(jobs: Iterable[RenderJob], config: ClusterConfig) -> set[str]:
    """Every model the jobs render on (all stages of their pipelines)."""
    models = set()
    for job in jobs:
        if job.pipeline is None:
            models.add(job.model)
        else:
            stages = config.pipelines[job.pipeline].stages
            models |= {config.resolve_model(stage.model, stage.style) for stage in stages}
    return models


async def serve_capacity(config: ClusterConfig, models: Iterable[str], app_name: str) -> int:
    """Renders the models' running replicas take at once: max_ongoing_requests x replicas."""
    status = await asyncio.to_thread(serve.status)
    app = status.applications.get(app_name)
    deployments = app.deployments if app is not None else {}
    total = 0
    for model in models:
        deployment = deployments.get(deployment_name(model))
        running = deployment.replica_states.get("RUNNING", 0) if deployment else 0
        total += config.models[model].max_ongoing_requests * max(running, 1)
    return total


@ray.remote(num_cpus=0.1, max_concurrency=1000)
class CampaignRunner:
    """One campaign's driver on the cluster (see `start_runner`)."""

    def __init__(
        self,
        config: dict[str, Any],
        manifest: dict[str, Any] | str,
        app_name: str = APP_NAME,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ):
        ray_metrics.install()
        cluster = config_from_dict(config, source="campaign runner")
        store = open_store(cluster.storage)
        parsed = (
            Manifest.model_validate_json(manifest)
            if isinstance(manifest, str)
            else Manifest.model_validate(manifest)
        )
        jobs = plan_campaign(parsed, cluster)
        models = campaign_models(jobs, cluster)
        try:  # its items' run records carry the campaign's tenant
            self.owner = store.get_bytes(layout.owner_key(parsed.campaign)).decode() or None
        except NotFoundError:
            self.owner = None
        self.loop = CampaignLoop(
            store,
            cluster,
            jobs,
            ServeJobRenderer(cluster, store, app_name),
            capacity=lambda: serve_capacity(cluster, models, app_name),
            settings=LoopSettings(max_in_flight=max_in_flight, max_attempts=max_attempts),
        )

    async def run(self) -> None:
        """Render the campaign to its end, then exit the actor (its numbers are in the store)."""
        # this task's context: every record it saves (through the module: Ray pickles this
        # class by value, and a ContextVar cannot be pickled)
        tenants.current_tenant.set(self.owner)
        try:
            await self.loop.run()
        finally:
            ray.actor.exit_actor()


def start_runner(
    config: ClusterConfig,
    manifest: Manifest | dict[str, Any] | str,
    app_name: str = APP_NAME,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    name_wait_s: float = 10.0,
) -> None:
    """Start the campaign's detached runner.

    A runner still exiting after its campaign ended is killed first; `ValueError` if
    the name is still taken after `name_wait_s` (another runner started meanwhile).
    """
    data = manifest  # JSON text is passed on as it is (the runner validates it)
    if isinstance(data, Manifest):
        data = data.model_dump(mode="json", by_alias=True)
    campaign = json.loads(data)["campaign"] if isinstance(data, str) else data["campaign"]
    name = runner_name(str(campaign))
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(name, namespace=CAMPAIGN_NAMESPACE), no_restart=True)
    deadline = time.monotonic() + name_wait_s
    while True:
        try:
            runner = CampaignRunner.options(
                name=name, namespace=CAMPAIGN_NAMESPACE, lifetime="detached"
            ).remote(
                config.model_dump(mode="json"),
                data,
                app_name,
                max_in_flight,
                max_attempts,
            )
            break
        except ValueError:  # the killed runner's name is released a moment later
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    runner.run.remote()


def runner_alive(campaign: str) -> bool:
    """Whether the campaign's runner actor exists (it may be exiting after the end)."""
    try:
        ray.get_actor(runner_name(campaign), namespace=CAMPAIGN_NAMESPACE)
    except ValueError:
        return False
    return True
