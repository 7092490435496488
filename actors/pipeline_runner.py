"""`PipelineRunner`: runs a pipeline of stages for one request, stage by stage.

Each stage runs through `actors.stage_runner.StageRunner` (cache, render,
checks, store). Stage renders go through an injected callable so that tests run
the runner with a fake renderer and the cluster with
`actors.stage_renderers.ServeStageRenderer`; this module imports no Ray.

Records (all in the store, so any process sharing store and config can go on
with a run, approve, reject or re-run it):

- the pipeline run: one `RunRecord` of kind "render" with `pipeline` set and
  `stage` unset. Status: running -> [awaiting_approval -> running]... -> done,
  failed or rejected. Its params hold its `actors.pipeline_state.PipelineRunState`:
  the stages it runs (a snapshot, overrides applied), `next_stage`, `stage_runs`
  (stage -> record id), `approved`, `rerun_from`, `overrides`, `input_keys` and
  `text_boxes`; its outputs map every finished stage to its image key and, once
  done, "image" to the last stage's.
- each stage: a `RunRecord` of kind "stage" with `parent_id` = the pipeline run.
  Its `image` (and the run's outputs) is the copy it delivers, tagged with its own
  run id and parameters; `stage_image` is the stored output below, shared by every
  run that hits the cache (`actors.stage_delivery`).

Store layout:

- ``cas/<h[:2]>/<h>.png``: render-stage outputs, content-addressed (h: sha256);
  ``cas/<h[:2]>/<h>``: the request's reference image and mask as uploaded.
- ``stage-cache/<k[:2]>/<k>.json``: the cache entry of key k (output key, its
  sha256, the stage run that made it, its metrics and typography report); written
  after the output, and never for an output whose text failed the gate.
- ``stage-cache/<k[:2]>/<k>.png``: hires outputs, which the tile router streams
  straight to the store, so they are addressed by their cache key instead.
- ``renders/<stage run id>/image.png``: the image each stage run delivers.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import time
from collections.abc import Mapping
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from actors.pipeline_state import (
    PipelineRequest,
    PipelineRunState,
    RenderStage,
    StageImage,
    failure_reason,
    save_quietly,
    sha256_hex,
    stage_model,
)
from actors.stage_delivery import stage_image_key
from actors.stage_runner import StageRunner
from core.config import ClusterConfig
from core.errors import NotFoundError, RequestError, StorageError
from core.imaging import ALLOWED_UPLOAD_FORMATS
from core.pipelines import PipelineConfig, StageConfig, StageContractError, check_mask_input
from core.preprocess import normalise_image, normalise_mask
from core.records import RunRecord, RunRegistry, model_fields
from core.remote.record import total_cost
from core.sampling_options import SamplingChoiceError
from core.schemas import MAX_SEED
from core.stage_sampling import stage_sampling
from core.store import ArtifactStore
from core.validation import check_size, resolve_text

__all__ = ["PipelineRunner"]

UPLOADS = ("reference", "mask")


class PipelineRunner:
    """Runs, resumes, approves, rejects and re-runs pipeline runs of one cluster config."""

    def __init__(
        self,
        config: ClusterConfig,
        store: ArtifactStore,
        render_stage: RenderStage,
        registry: RunRegistry | None = None,
    ):
        self.config = config
        self.store = store
        self.registry = registry if registry is not None else RunRegistry(store)
        self.stages = StageRunner(config, store, render_stage, self.registry)
        self._active: set[str] = set()

    # -- starting runs -------------------------------------------------------------

    async def run(self, pipeline: str, request: PipelineRequest) -> RunRecord:
        """Start a run of `pipeline` and take it to its first approval gate or its end."""
        return await self.advance(self.start(pipeline, request).id)

    async def rerun(
        self, run_id: str, from_stage: str, overrides: Mapping[str, Any] | None = None
    ) -> RunRecord:
        """Re-run `run_id` from `from_stage` (see `start_rerun`) to a gate or the end."""
        return await self.advance(self.start_rerun(run_id, from_stage, overrides).id)

    def start(self, pipeline: str, request: PipelineRequest) -> RunRecord:
        """Validate the request and record a new run (status running); render nothing yet.

        Raises `NotFoundError` for an unknown pipeline and `RequestError` for a bad request.
        """
        if pipeline not in self.config.pipelines:
            known = ", ".join(sorted(self.config.pipelines)) or "none configured"
            raise NotFoundError("pipeline", f"no pipeline {pipeline!r} (pipelines: {known})")
        stages = self.config.pipelines[pipeline].stages
        state = PipelineRunState(stages=stages, text_boxes=request.text_boxes)
        return self._create(pipeline, state, request)

    def start_rerun(
        self, run_id: str, from_stage: str, overrides: Mapping[str, Any] | None = None
    ) -> RunRecord:
        """Record a new run that repeats `run_id` with `overrides` applied to `from_stage`.

        The new run uses the stages the old one ran (not the config's current ones),
        recomputes `from_stage` and every stage after it, and takes the stages before
        it from the cache. Approval gates the old run passed before `from_stage` are
        not asked again; gates from `from_stage` on are. Its parent_id is `run_id`.
        """
        original = self.pipeline_run(run_id)
        old = PipelineRunState.from_record(original)
        pipeline = _overridden(old.pipeline, from_stage, overrides)
        uploads = {item: self.store.get_bytes(key) for item, key in old.input_keys.items()}
        request = PipelineRequest(
            prompt=original.prompt,
            negative_prompt=original.negative_prompt,
            seed=original.seed,
            reference=uploads.get("reference"),
            mask=uploads.get("mask"),
            campaign=original.campaign,
            text_boxes=old.text_boxes,
        )
        state = PipelineRunState(
            stages=pipeline.stages,
            approved=old.approved,
            rerun_from=from_stage,
            overrides=dict(overrides or {}),
            text_boxes=old.text_boxes,
        )
        return self._create(str(original.pipeline), state, request, parent_id=run_id)

    def _create(
        self,
        name: str,
        state: PipelineRunState,
        request: PipelineRequest,
        parent_id: str | None = None,
    ) -> RunRecord:
        """Check the stages and the request, store the uploads and record the run."""
        pipeline = state.pipeline
        for stage in pipeline.stages:
            self._check_stage(stage)
        self._check_request(name, pipeline, request)
        input_keys, inputs = {}, {}
        for item in UPLOADS:
            data = getattr(request, item)
            if data is not None:
                input_keys[item] = self.store.put_content_addressed(data)
                inputs[item] = sha256_hex(data)
        model_name, model = stage_model(self.config, pipeline.stages[-1])
        record = RunRecord(
            kind="render",
            status="running",
            **model_fields(model_name, model),
            pipeline=name,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=request.seed if request.seed is not None else secrets.randbelow(MAX_SEED),
            params=state.model_copy(update={"input_keys": input_keys}).to_params(),
            inputs=inputs,
            parent_id=parent_id,
            campaign=request.campaign,
        )
        self.registry.save(record)
        return record

    def _check_stage(self, stage: StageConfig) -> None:
        """The stage's model exists, its size and steps fit the model and the limits, and the
        model allows its scheduler and adapters."""
        _, model = stage_model(self.config, stage)
        try:
            check_size(stage.width, stage.height, model, self.config)
        except RequestError as exc:
            raise RequestError(f"stages.{stage.name}.{exc.field}", exc.message) from None
        steps = stage.steps if stage.steps is not None else model.default_steps
        if steps > self.config.limits.max_steps:
            raise RequestError(
                f"stages.{stage.name}.steps",
                f"must be at most {self.config.limits.max_steps}, got {steps}",
            )
        try:  # a re-run's overrides may choose them
            stage_sampling(stage, model, self.config.style_loras)
        except SamplingChoiceError as exc:
            raise RequestError(f"stages.{stage.name}.{exc.field}", str(exc)) from None

    def _check_request(self, name: str, pipeline: PipelineConfig, request: PipelineRequest) -> None:
        """Prompt and uploads: each upload is consumed by some stage, and vice versa."""
        limit = self.config.limits.max_prompt_chars
        if not request.prompt:
            raise RequestError("prompt", "must not be empty")
        if len(request.prompt) > limit:
            raise RequestError("prompt", f"is {len(request.prompt)} characters, over {limit}")
        for item in UPLOADS:
            data, consumers = getattr(request, item), pipeline.consumes(item)
            if data is None and consumers:
                raise RequestError(
                    item, f"stage {consumers[0]!r} of pipeline {name!r} consumes one; send it"
                )
            if data is not None and not consumers:
                raise RequestError(item, f"no stage of pipeline {name!r} consumes one")
            if data is not None:
                self._check_upload(item, data)
        last = pipeline.stages[-1]
        resolve_text(request.text_boxes, self.config, (last.width, last.height))
        for stage in pipeline.stages:  # fail now rather than stages later
            if "reference" in stage.consumes:
                normalise_image(
                    request.reference or b"", stage.width, stage.height, field="reference"
                )
            if "mask" in stage.consumes:
                mask = normalise_mask(request.mask or b"", stage.width, stage.height)
                try:
                    check_mask_input(stage, mask)
                except StageContractError as exc:
                    raise RequestError("mask", str(exc)) from None

    def _check_upload(self, item: str, data: bytes) -> None:
        limits = self.config.limits
        if len(data) > limits.max_upload_bytes:
            raise RequestError(
                item, f"upload is {len(data)} bytes, over the limit of {limits.max_upload_bytes}"
            )
        try:
            with Image.open(io.BytesIO(data), formats=ALLOWED_UPLOAD_FORMATS) as image:
                pixels = image.width * image.height
                if pixels <= limits.max_upload_pixels:
                    image.load()  # a truncated file fails here, not in a stage later
        except Image.DecompressionBombError:
            pixels = limits.max_upload_pixels + 1
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise RequestError(item, f"not a readable image (PNG, JPEG or WebP): {exc}") from None
        if pixels > limits.max_upload_pixels:
            raise RequestError(
                item, f"image has over {limits.max_upload_pixels} pixels (decompression bomb guard)"
            )

    # -- moving runs on ------------------------------------------------------------

    async def advance(self, run_id: str) -> RunRecord:
        """Run a running run's stages from its `next_stage` to a gate, the end or a failure.

        Returns the run's record: awaiting_approval, done, or failed with the reason
        (the failed stage's record says it too). Raises `StorageError` when the store
        fails, after recording what it still can.
        """
        run = self.pipeline_run(run_id)
        if run.status != "running":
            raise RequestError("id", f"run {run_id} is {run.status}; only a running run advances")
        if run_id in self._active:
            raise RequestError("id", f"run {run_id} is already advancing")
        self._active.add(run_id)
        try:
            return await self._advance(run)
        finally:
            self._active.discard(run_id)

    async def approve(self, run_id: str) -> RunRecord:
        """Approve a run awaiting approval and continue it from the next stage."""
        self.mark_approved(run_id)
        return await self.advance(run_id)

    def mark_approved(self, run_id: str) -> RunRecord:
        """Pass the gate a run waits at (status running); `advance` continues it."""
        run, state = self._awaiting(run_id)
        approved = state.approving(state.previous_stage.name)
        run = run.model_copy(update={"status": "running", "params": approved.to_params()})
        self.registry.save(run)
        return run

    def reject(self, run_id: str, reason: str = "") -> RunRecord:
        """End a run awaiting approval with status rejected (the reason goes in `error`)."""
        run, state = self._awaiting(run_id)
        gate = state.previous_stage.name
        message = f"rejected after stage {gate!r}" + (f": {reason}" if reason else "")
        run = run.model_copy(update={"status": "rejected", "error": message})
        self.registry.save(run)
        return run

    def pipeline_run(self, run_id: str) -> RunRecord:
        """The record of pipeline run `run_id`; `NotFoundError` / `RequestError` otherwise."""
        run = self.registry.get(run_id)
        if run.pipeline is None or run.stage is not None:
            raise RequestError("id", f"run {run_id} is not a pipeline run")
        return run

    def stage_records(self, run_id: str) -> list[RunRecord]:
        """The stage records of a pipeline run, in stage order."""
        state = PipelineRunState.from_record(self.pipeline_run(run_id))
        return [self.registry.get(stage_id) for stage_id in state.stage_runs.values()]

    def _awaiting(self, run_id: str) -> tuple[RunRecord, PipelineRunState]:
        run = self.pipeline_run(run_id)
        if run.status != "awaiting_approval":
            raise RequestError("id", f"run {run_id} is {run.status}, not awaiting approval")
        return run, PipelineRunState.from_record(run)

    async def _advance(self, run: RunRecord) -> RunRecord:
        state = PipelineRunState.from_record(run)
        stages = state.stages
        previous = None
        if state.next_stage > 0:  # the stored output it consumes, not the delivered copy
            stage_run = self.registry.get(state.stage_runs[state.previous_stage.name])
            previous = StageImage(stage_image_key(stage_run))
        for index in range(state.next_stage, len(stages)):
            stage = stages[index]
            started = time.perf_counter()
            try:
                record, output = await self.stages.run(run, state, index, previous)
            except StorageError as exc:
                save_quietly(self.registry, self._failed(run, stage, str(exc)))
                raise
            except asyncio.CancelledError:
                save_quietly(
                    self.registry, self._failed(run, stage, f"stage {stage.name!r}: cancelled")
                )
                raise
            except Exception as exc:  # before the stage had a record: a bad stage or input
                return self._save(self._failed(run, stage, failure_reason(stage, exc)))
            if output is None:  # the stage failed and its record says why
                return self._save(self._failed(run, stage, str(record.error), record.id))
            run = self._after_stage(run, stage, index, record, started)
            previous = output
            if stage.approval == "required" and (
                stage.name not in state.approved
                or (state.force_from is not None and index >= state.force_from)
            ):
                return self._save(run.model_copy(update={"status": "awaiting_approval"}))
            if index < len(stages) - 1:
                self._save(run)  # progress, for readers elsewhere
        final = {**run.outputs, "image": run.outputs[stages[-1].name]}
        return self._save(run.model_copy(update={"status": "done", "outputs": final}))

    def _after_stage(
        self,
        run: RunRecord,
        stage: StageConfig,
        index: int,
        record: RunRecord,
        started: float,
    ) -> RunRecord:
        elapsed = time.perf_counter() - started
        state = PipelineRunState.from_record(run).after_stage(index, record.id)
        counter = "cache_hits" if record.cache == "hit" else "cache_misses"
        return run.model_copy(
            update={
                "params": state.to_params(),
                "outputs": {**run.outputs, stage.name: record.outputs["image"]},
                "timings": {
                    **run.timings,
                    f"{stage.name}_s": round(elapsed, 4),
                    "total_s": round(run.timings.get("total_s", 0.0) + elapsed, 4),
                },
                "metrics": {**run.metrics, counter: run.metrics.get(counter, 0) + 1},
                "cost_usd": total_cost([run.cost_usd, record.cost_usd]),  # hosted calls
            }
        )

    @staticmethod
    def _failed(
        run: RunRecord, stage: StageConfig, error: str, stage_run: str | None = None
    ) -> RunRecord:
        """The run, failed at `stage` with `error` (linking the stage's record if it has one)."""
        state = PipelineRunState.from_record(run)
        if stage_run is not None:
            state = state.with_stage_run(stage.name, stage_run)
        update = {"status": "failed", "error": error, "params": state.to_params()}
        return run.model_copy(update=update)

    def _save(self, record: RunRecord) -> RunRecord:
        self.registry.save(record)
        return record


def _overridden(
    pipeline: PipelineConfig, stage: str, overrides: Mapping[str, Any] | None
) -> PipelineConfig:
    """`pipeline` with `overrides` applied to `stage`; `RequestError` naming what is wrong."""
    try:
        pipeline.index(stage)
    except KeyError as exc:
        raise RequestError("stage", exc.args[0]) from None
    if not overrides:
        return pipeline
    try:
        return pipeline.with_overrides(stage, overrides)
    except KeyError as exc:
        raise RequestError("overrides", exc.args[0]) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][2:]) or stage
        message = first["msg"].removeprefix("Value error, ")
        raise RequestError("overrides", f"{where}: {message}") from None
