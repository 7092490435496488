"""`CampaignRunner`: renders every job of a campaign exactly once, resumably, bounded.

Three layers, Ray only in the last:

- `plan_campaign`: the manifest expanded into jobs and checked against the config
  and against what the runner can render, naming every problem before anything
  renders (a `ManifestError`).
- `CampaignLoop`: the scheduling loop, Ray-free. It marks done what the run records
  say finished, skips what the ledger says is done, keeps at most `bound` renders in
  flight (re-read from an injected `capacity` while it runs), retries a 503 with
  backoff without counting it, retries other failures up to `max_attempts` and then
  reports them, records every job under its claimed run id (so a job never has two
  records), saves progress every second and writes the report at the end. Renders
  go through an injected async `render_job(job, run_id) -> RunRecord`.
- `ServeJobRenderer` and the `CampaignRunner` actor: single renders through the
  model's Serve handle, large ones through a `TileRouter`, pipeline items through a
  `PipelineRunner`; one detached actor per campaign, named ``campaign-<name>``,
  that exits when its campaign is over (its numbers stay in the store).

Every job counts as one render in flight, whether it is one model call, a tiled
large-format job or a pipeline of stages.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import posixpath
import random
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError

from actors.pipeline_runner import PipelineRequest, PipelineRunner
from actors.stage_renderers import ServeStageRenderer
from actors.tile_router import TileRouter
from core.campaign import (
    Manifest,
    ManifestError,
    ProgressTracker,
    RenderJob,
    claim_run_id,
    expand_manifest,
    layout,
    mark_done,
    mark_failed,
    pending_jobs,
    recover_finished,
    save_status,
    write_report,
)
from core.campaign.progress import CampaignState
from core.campaign.sizes import is_ratio
from core.config import APP_NAME, ClusterConfig, deployment_name
from core.config_file import config_from_dict
from core.errors import (
    JobFailed,
    OverloadedError,
    RenderClusterError,
    RequestError,
    TypographyGateFailed,
)
from core.imaging import EXTENSIONS, encode_image
from core.model_source import parse_source
from core.pipelines import PipelineConfig
from core.records import RunRecord, RunRegistry
from core.schemas import GenerateResult, LargeRenderResult, RenderRequestBody
from core.store import ArtifactStore, open_store
from core.typography import Anchor, TextBox
from core.typography.delivery import TypographyReport, deliver_text
from core.validation import check_size, resolve_large, resolve_render, resolve_text

__all__ = [
    "CAMPAIGN_NAMESPACE",
    "CampaignLoop",
    "CampaignRunner",
    "LoopSettings",
    "RenderJobFn",
    "RunnerStats",
    "ServeJobRenderer",
    "fit_pipeline",
    "load_stats",
    "manifest_key",
    "plan_campaign",
    "render_key",
    "runner_alive",
    "runner_name",
    "start_runner",
]

CAMPAIGN_NAMESPACE = "render-cluster-jobs"
DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_MAX_ATTEMPTS = 3
ASPECT_MARGIN = 0.01  # fitted pipeline stages keep the item's aspect ratio this closely
SINGLE_PASS_AREA = 1.25  # x native_resolution**2: the most one model call renders
_CHECK_RUN_ID = "20000101-000000-000000-00000000"  # stands in for a run id in dry-run checks
COPY_ANCHOR = Anchor(x=0.06, y=0.68, w=0.88, h=0.26)
"""Where an item's copy goes: a band across the bottom of every size."""

RenderJobFn = Callable[[RenderJob, str], Awaitable[RunRecord]]
CapacityFn = Callable[[], Awaitable[int]]
T = TypeVar("T")


# -- names and keys ---------------------------------------------------------------


def runner_name(campaign: str) -> str:
    """Name of the campaign's runner actor (in `CAMPAIGN_NAMESPACE`)."""
    return f"campaign-{campaign}"


def render_key(job: RenderJob, extension: str) -> str:
    """Fixed store key of a job's image: ``campaigns/<name>/renders/<job key>.<ext>``."""
    return f"{layout.campaign_prefix(job.campaign)}renders/{job.key}.{extension}"


def manifest_key(campaign: str) -> str:
    """Where the API keeps the validated manifest (for reports on demand)."""
    return f"{layout.campaign_prefix(campaign)}manifest.json"


def stats_key(campaign: str) -> str:
    """Where the runner keeps its own numbers (bound, most in flight, retries)."""
    return f"{layout.campaign_prefix(campaign)}runner.json"


# -- planning ---------------------------------------------------------------------


def plan_campaign(manifest: Manifest, config: ClusterConfig) -> list[RenderJob]:
    """Every job of the campaign; `ManifestError` naming every job the runner cannot render."""
    jobs = expand_manifest(manifest, config, pipeline_models(config))
    problems = [problem for job in jobs for problem in job_problems(job, config)]
    if problems:
        raise ManifestError(f"campaign {manifest.campaign!r}", list(dict.fromkeys(problems)))
    return jobs


def pipeline_models(config: ClusterConfig) -> dict[str, str]:
    """Pipeline name -> the model of its first stage (which sizes its renders)."""
    return {
        name: config.resolve_model(pipeline.stages[0].model, pipeline.stages[0].style)
        for name, pipeline in config.pipelines.items()
    }


def is_large_job(job: RenderJob, config: ClusterConfig) -> bool:
    """Whether a job goes through the tile router (hires) rather than one model call.

    One call renders up to `SINGLE_PASS_AREA` times the model's native pixel count, so
    aspect ratios kept at the native area stay single renders; beyond, a model repeats
    its subject, and the large-format path gives a coherent image.
    """
    native = config.models[job.model].native_resolution
    return job.large or job.width * job.height > SINGLE_PASS_AREA * native**2


def job_problems(job: RenderJob, config: ClusterConfig) -> list[str]:
    """Why the runner could not render `job` (a dry run of its checks), or nothing."""
    size = f"{job.size} ({job.width}x{job.height})" if is_ratio(job.size) else job.size
    where = f"items[{job.item_index}] at {size}"
    try:
        body = request_body(job)
        if job.pipeline is not None:
            _check_pipeline_job(job, config)
            resolve_text(body.text_boxes, config, (job.width, job.height))
        elif is_large_job(job, config):
            resolve_large(body, config, _CHECK_RUN_ID, render_key(job, "png"))
        else:
            resolve_render(body, config)
    except RequestError as exc:  # the item's copy is its one text box
        return [
            f"{where}: {str(exc).replace('text_boxes[0].copy', 'copy')}".replace(
                "text_boxes[0]", "copy"
            )
        ]
    return []


def _check_pipeline_job(job: RenderJob, config: ClusterConfig) -> None:
    name = str(job.pipeline)
    pipeline = config.pipelines[name]
    gates = [stage.name for stage in pipeline.stages if stage.approval == "required"]
    if gates:
        raise RequestError(
            "pipeline",
            f"{name!r} stops for approval after stage {gates[0]!r}; a campaign renders "
            "unattended, so use a pipeline without approval gates",
        )
    uploads = [item for item in ("reference", "mask") if pipeline.consumes(item)]
    if uploads:
        raise RequestError("pipeline", f"{name!r} needs a {uploads[0]} image, which items lack")
    for stage in fit_pipeline(config, name, job.width, job.height).stages:
        model = config.models[config.resolve_model(stage.model, stage.style)]
        try:
            check_size(stage.width, stage.height, model, config)
        except RequestError as exc:
            raise RequestError(f"pipeline {name!r} stage {stage.name!r}", exc.message) from None


def fit_pipeline(config: ClusterConfig, name: str, width: int, height: int) -> PipelineConfig:
    """The pipeline with its last stage at `width` x `height`.

    Earlier stages take the same aspect ratio, keeping their area, on their model's grid.
    """
    pipeline = config.pipelines[name]
    *earlier, last = pipeline.stages
    if (last.width, last.height) == (width, height):
        return pipeline
    try:
        for stage in earlier:
            model = config.models[config.resolve_model(stage.model, stage.style)]
            fitted = _grid_size(stage.width * stage.height, width / height, model.latent_factor)
            pipeline = pipeline.with_overrides(
                stage.name, {"width": fitted[0], "height": fitted[1]}
            )
        return pipeline.with_overrides(last.name, {"width": width, "height": height})
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise RequestError(f"pipeline {name!r}", message) from None


def _grid_size(area: int, aspect: float, factor: int) -> tuple[int, int]:
    """(width, height) on the `factor` grid with `aspect` (within 1 %) and about `area` pixels.

    A hires stage takes its base only at its own aspect ratio (2 % tolerance), and small
    stages on a coarse grid rarely hit it by rounding alone.
    """
    ideal_height = math.sqrt(area / aspect)
    candidates = []
    for height in range(factor, math.ceil(4 * ideal_height / factor) * factor + 1, factor):
        width = max(factor, round(height * aspect / factor) * factor)
        error = abs(width / height - aspect) / aspect
        closeness = abs(math.log(width * height / area))
        candidates.append(((error > ASPECT_MARGIN, closeness, error), (width, height)))
    return min(candidates)[1]


def copy_box(text: str) -> TextBox:
    """A campaign item's copy as a text box centred in the lower band of the image."""
    try:
        return TextBox(
            copy=text, anchor=COPY_ANCHOR, align="center", valign="bottom", min_cap_height_px=8
        )
    except ValidationError as exc:
        raise RequestError("copy", exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


def request_body(job: RenderJob) -> RenderRequestBody:
    """The render request of a job, its copy as a text box."""
    boxes = [copy_box(job.copy_text)] if job.copy_text else []
    return RenderRequestBody(**job.request, text_boxes=boxes)


def job_record(job: RenderJob, config: ClusterConfig, run_id: str, **fields: Any) -> RunRecord:
    """The campaign-item record of `job` (status done unless `fields` say otherwise)."""
    model = config.models[job.model]
    request = job.request
    params = {
        "item_id": job.item_id,
        "size": job.size,
        "variant": job.variant,
        "job_key": job.key,
        "width": job.width,
        "height": job.height,
        "format": request["format"],
        "copy": job.copy_text,
    }
    base: dict[str, Any] = {
        "id": run_id,
        "kind": "campaign-item",
        "status": "done",
        "model": job.model,
        "model_source": model.source,
        "model_revision": parse_source(model.source).revision,
        "family": model.family,
        "style": request.get("style"),
        "pipeline": job.pipeline,
        "prompt": str(request["prompt"]),
        "negative_prompt": str(request.get("negative_prompt") or ""),
        "seed": job.seed,
        "campaign": job.campaign,
    }
    params |= fields.pop("params", {})
    return RunRecord(**(base | fields), params=params)


# -- the scheduling loop (no Ray) -------------------------------------------------


@dataclass(frozen=True)
class LoopSettings:
    """How hard and how often the loop tries."""

    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT  # caps whatever `capacity` says
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # failed attempts per job and run, 503s aside
    backoff_s: float = 0.5  # first retry delay; doubles per retry, jittered
    max_backoff_s: float = 10.0
    status_interval_s: float = 1.0
    capacity_interval_s: float = 2.0


class RunnerStats(BaseModel):
    """What a runner did, beside the progress numbers: saved as ``runner.json``."""

    model_config = ConfigDict(extra="forbid")

    campaign: str
    state: CampaignState
    bound: int = Field(description="Renders allowed in flight now.")
    bound_max: int = Field(description="The largest bound this run used.")
    max_in_flight_observed: int = Field(description="Most renders seen in flight at once.")
    rendered: int = Field(0, description="Jobs this run rendered and recorded.")
    skipped: int = Field(0, description="Jobs already done when this run started.")
    recovered: int = Field(0, description="Jobs recorded by a dead runner, marked done now.")
    gave_up: int = Field(0, description="Jobs this run gave up on after their last attempt.")
    for_review: int = Field(
        0, description="Jobs whose copy failed the typography gate: kept for review, not delivered."
    )
    failed_attempts: int = Field(0, description="Attempts that failed (503s not counted).")
    overloaded_retries: int = Field(0, description="503 / backpressure answers retried.")
    elapsed_s: float = 0.0
    report: str | None = Field(None, description="Store key of the HTML report.")
    summary_csv: str | None = Field(None, description="Store key of the CSV summary.")


def load_stats(store: ArtifactStore, campaign: str) -> RunnerStats | None:
    """The runner numbers of the campaign's last run, if it saved any."""
    key = stats_key(campaign)
    if not store.exists(key):
        return None
    return RunnerStats.model_validate_json(store.get_bytes(key))


class _Slots:
    """Renders in flight, at most `limit` (which may change while they run)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.max_used = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.used < self.limit)
            self.used += 1
            self.max_used = max(self.max_used, self.used)

    async def __aexit__(self, *_: object) -> None:
        async with self._changed:
            self.used -= 1
            self._changed.notify()

    async def resize(self, limit: int) -> None:
        async with self._changed:
            self.limit = limit
            self._changed.notify_all()


def describe(exc: BaseException) -> str:
    """One line for the ledger and the report (Ray's wrapper and traceback left out)."""
    exc = _cause(exc)
    return str(exc) if isinstance(exc, RenderClusterError) else f"{type(exc).__name__}: {exc}"


def _cause(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)  # Ray's RayTaskError keeps the remote exception here
    return cause if isinstance(cause, BaseException) else exc


class CampaignLoop:
    """Renders a campaign's pending jobs through `render_job`, bounded, resumable, recorded."""

    def __init__(
        self,
        store: ArtifactStore,
        config: ClusterConfig,
        jobs: Sequence[RenderJob],
        render_job: RenderJobFn,
        *,
        capacity: CapacityFn | None = None,
        settings: LoopSettings = LoopSettings(),
    ):
        """`capacity()`: renders the cluster takes at once (unset: `settings.max_in_flight`)."""
        if not jobs:
            raise ValueError("a campaign needs at least one job")
        self.store = store
        self.config = config
        self.jobs = list(jobs)
        self.campaign = self.jobs[0].campaign
        self.render_job = render_job
        self.capacity = capacity
        self.settings = settings
        self.registry = RunRegistry(store)
        self.slots = _Slots(settings.max_in_flight)
        self.stats = RunnerStats(
            campaign=self.campaign, state="running", bound=0, bound_max=0, max_in_flight_observed=0
        )
        self.tracker = ProgressTracker(self.campaign, len(self.jobs))
        self._writes: set[asyncio.Future] = set()

    async def run(self) -> RunnerStats:
        """Render everything not done yet, then write the report; return this run's numbers.

        Cancelled (the runner killed), it saves its progress as stopped and re-raises:
        a new loop over the same jobs finishes the rest.
        """
        started = time.monotonic()
        recovered = await self._write(recover_finished, self.store, self.jobs, self.registry)
        pending = await self._write(pending_jobs, self.store, self.campaign, self.jobs)
        skipped = len(self.jobs) - len(pending)
        self.tracker = ProgressTracker(self.campaign, len(self.jobs), done=skipped)
        self._update(recovered=len(recovered), skipped=skipped - len(recovered))
        await self._resize()
        queue = deque(pending)
        helpers = [asyncio.create_task(self._status_saver()), asyncio.create_task(self._resizer())]
        workers = [
            asyncio.create_task(self._worker(queue))
            for _ in range(min(self.settings.max_in_flight, len(pending)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            await self._settle(workers + helpers)
            self._update(elapsed_s=round(time.monotonic() - started, 3))
            self._save("stopped")
            raise
        await self._settle(helpers)
        self._save("running")
        keys = await asyncio.to_thread(
            write_report, self.store, self.campaign, self.jobs, registry=self.registry
        )
        self._update(
            report=keys.html, summary_csv=keys.csv, elapsed_s=round(time.monotonic() - started, 3)
        )
        self._save("finished")
        return self.stats

    async def _worker(self, queue: deque[RenderJob]) -> None:
        while queue:
            await self._render(queue.popleft())

    async def _render(self, job: RenderJob) -> None:
        """One job to its end: done, or given up on after `max_attempts` failures."""
        run_id = await self._write(claim_run_id, self.store, job)
        failures = overloads = 0
        while True:
            async with self.slots:
                self._update(max_in_flight_observed=self.slots.max_used)
                self.tracker.started()
                try:
                    record: RunRecord | None = await self.render_job(job, run_id)
                    error = None
                except Exception as exc:
                    record, error = None, exc
            if record is not None:
                await self._write(self._record_done, job, run_id, record)
                self.tracker.finished(ok=True)
                self._update(rendered=self.stats.rendered + 1)
                return
            assert error is not None
            if isinstance(_cause(error), OverloadedError):
                overloads += 1
                self.tracker.will_retry()
                self._update(overloaded_retries=self.stats.overloaded_retries + 1)
                await asyncio.sleep(self._backoff(overloads))
                continue
            failures += 1
            await self._write(self._record_failure, job, run_id, error)
            self._update(failed_attempts=self.stats.failed_attempts + 1)
            if isinstance(_cause(error), TypographyGateFailed):  # rendered: a person decides
                self.tracker.finished(ok=False)
                self._update(for_review=self.stats.for_review + 1)
                return
            permanent = isinstance(_cause(error), RequestError)
            if permanent or failures >= self.settings.max_attempts:
                self.tracker.finished(ok=False)
                self._update(gave_up=self.stats.gave_up + 1)
                return
            self.tracker.will_retry()
            await asyncio.sleep(self._backoff(failures))

    async def _write(self, write: Callable[..., T], *args: Any) -> T:
        """Run store I/O in a thread, to its end even if the caller is cancelled.

        A stopping loop waits for every write (`_settle`), so no job is left half-recorded.
        """
        future = asyncio.ensure_future(asyncio.to_thread(write, *args))
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)
        return await asyncio.shield(future)

    async def _settle(self, tasks: list[asyncio.Task]) -> None:
        """Cancel `tasks`, then wait for them and for every write they started."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)

    def _record_done(self, job: RenderJob, run_id: str, record: RunRecord) -> None:
        if record.id != run_id or record.status != "done" or not record.outputs:
            raise ValueError(f"render_job must return a done record {run_id} with outputs")
        self.registry.save(record)
        mark_done(self.store, job, run_id, dict(record.outputs))

    def _record_failure(self, job: RenderJob, run_id: str, error: BaseException) -> None:
        message, cause, review = describe(error), _cause(error), None
        fields: dict[str, Any] = {"status": "failed", "error": message}
        if isinstance(cause, TypographyGateFailed) and cause.review_image is not None:
            review = cause.review_image
            fields.update(outputs={"review_image": review}, typography=cause.report)
        self.registry.save(job_record(job, self.config, run_id, **fields))
        mark_failed(self.store, job, message, run_id=run_id, review_image=review)

    def _backoff(self, retry: int) -> float:
        ceiling = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (retry - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def _resize(self) -> None:
        wanted = await self.capacity() if self.capacity else self.settings.max_in_flight
        bound = max(1, min(wanted, self.settings.max_in_flight))
        await self.slots.resize(bound)
        self._update(bound=bound, bound_max=max(bound, self.stats.bound_max))

    async def _resizer(self) -> None:
        while True:
            await asyncio.sleep(self.settings.capacity_interval_s)
            await self._resize()

    async def _status_saver(self) -> None:
        while True:
            await self._write(self._save, "running")
            await asyncio.sleep(self.settings.status_interval_s)

    def _update(self, **fields: Any) -> None:
        self.stats = self.stats.model_copy(update=fields)

    def _save(self, state: CampaignState) -> None:
        self._update(state=state)
        save_status(self.store, self.tracker.snapshot(state))
        stats = self.stats.model_dump_json(indent=2).encode()
        self.store.put_bytes(stats_key(self.campaign), stats)


# -- rendering on the cluster -----------------------------------------------------


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
        self.app_name = app_name
        self.spool_dir = spool_dir or Path(tempfile.gettempdir()) / "render-cluster-spool"
        self.registry = RunRegistry(store)
        self.stages = ServeStageRenderer(config.storage, app_name, self.spool_dir)

    async def __call__(self, job: RenderJob, run_id: str) -> RunRecord:
        started = time.perf_counter()
        if job.pipeline is not None:
            record = await self._pipeline(job, run_id)
        elif is_large_job(job, self.config):
            record = await self._large(job, run_id)
        else:
            record = await self._single(job, run_id)
        timings = {**record.timings, "total_s": round(time.perf_counter() - started, 4)}
        return record.model_copy(update={"timings": timings})

    async def _single(self, job: RenderJob, run_id: str) -> RunRecord:
        body = request_body(job)
        resolved = resolve_render(body, self.config)
        handle = serve.get_deployment_handle(deployment_name(resolved.model_name), self.app_name)
        try:
            result: GenerateResult = await handle.render.remote(resolved.request)
        except BackPressureError:
            raise OverloadedError(resolved.model_name, retry_after_s=1) from None
        image, report = result.image, None
        if resolved.text is not None:
            image = np.array(result.image, copy=True)
            report = await deliver_text(image, resolved.text)
        key = render_key(job, EXTENSIONS[body.format])
        await asyncio.to_thread(self._store_image, key, image, body)
        request = resolved.request
        record = job_record(
            job,
            self.config,
            run_id,
            params={"mode": "single", "steps": request.steps, "guidance": request.guidance},
            timings={"compute_s": round(result.compute_s, 4)},
            metrics={"batch_size": result.batch_size},
            outputs={"image": key},
        )
        return _gated(record, report, key)

    def _store_image(self, key: str, image: np.ndarray, body: RenderRequestBody) -> None:
        self.store.put_bytes(key, encode_image(image, body.format, dpi=body.dpi))

    async def _large(self, job: RenderJob, run_id: str) -> RunRecord:
        body = request_body(job)
        spec, _ = resolve_large(body, self.config, run_id, render_key(job, EXTENSIONS[body.format]))
        router = TileRouter.remote(
            self.app_name, self.config.storage.model_dump(mode="json"), str(self.spool_dir)
        )
        try:
            result: LargeRenderResult = await router.run.remote(spec)
        finally:
            ray.kill(router, no_restart=True)
        record = job_record(
            job,
            self.config,
            run_id,
            params={
                "mode": spec.mode,
                "steps": spec.steps,
                "guidance": spec.guidance,
                "strength": spec.strength,
                "tile_size": spec.tile_size,
            },
            timings=result.timings,
            metrics={
                "seam_score": result.seam_score,
                "tiles": result.tiles,
                "retries": result.retries,
                "splits": result.splits,
                "replicas_used": len(result.replicas_used),
            },
            outputs={"image": result.output_key},
        )
        return _gated(record, result.typography, result.output_key)

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
        last = runner.stage_records(run.id)[-1]
        if run.status != "done":
            review = last.outputs.get("review_image")
            if review is not None:
                raise TypographyGateFailed(str(run.error), run.id, review, last.typography)
            raise JobFailed(run.id, run.error or f"pipeline run ended {run.status}")
        source = run.outputs["image"]
        key = render_key(job, posixpath.splitext(source)[1].lstrip(".") or "png")
        await asyncio.to_thread(self._copy, source, key)
        return job_record(
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
        )

    def _copy(self, source: str, key: str) -> None:
        with self.store.open(source) as stream:
            self.store.put_file(key, stream)


def _gated(record: RunRecord, report: TypographyReport | None, image_key: str) -> RunRecord:
    """The record with the gate's report; `TypographyGateFailed` (for review) if it failed."""
    if report is None:
        return record
    typography = report.model_dump(mode="json")
    if not report.passed:
        raise TypographyGateFailed(report.message(), record.id, image_key, typography)
    return record.model_copy(update={"typography": typography})


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
        manifest: dict[str, Any],
        app_name: str = APP_NAME,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ):
        cluster = config_from_dict(config, source="campaign runner")
        store = open_store(cluster.storage)
        jobs = plan_campaign(Manifest.model_validate(manifest), cluster)
        models = campaign_models(jobs, cluster)
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
        try:
            await self.loop.run()
        finally:
            ray.actor.exit_actor()


def start_runner(
    config: ClusterConfig,
    manifest: Manifest,
    app_name: str = APP_NAME,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    name_wait_s: float = 10.0,
) -> None:
    """Start the campaign's detached runner.

    A runner still exiting after its campaign ended is killed first; `ValueError` if
    the name is still taken after `name_wait_s` (another runner started meanwhile).
    """
    name = runner_name(manifest.campaign)
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(name, namespace=CAMPAIGN_NAMESPACE), no_restart=True)
    deadline = time.monotonic() + name_wait_s
    while True:
        try:
            runner = CampaignRunner.options(
                name=name, namespace=CAMPAIGN_NAMESPACE, lifetime="detached"
            ).remote(
                config.model_dump(mode="json"),
                manifest.model_dump(mode="json", by_alias=True),
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
