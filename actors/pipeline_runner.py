"""`PipelineRunner`: runs a pipeline of stages for one request, stage by stage.

For each stage it computes the stage cache key (`core.pipelines.stage_cache_key`).
On a hit it reuses the stored output and the stage record says cache "hit";
otherwise it checks the stage's inputs, renders it through the injected
`render_stage` callable, checks the output and stores it. Stage renders go
through an injected callable so that tests run the runner with a fake renderer
and the cluster with `actors.stage_renderers.ServeStageRenderer`; this module
imports no Ray.

Records (all in the store, so any process sharing store and config can go on
with a run, approve, reject or re-run it):

- the pipeline run: one `RunRecord` of kind "render" with `pipeline` set and
  `stage` unset. Status: running -> [awaiting_approval -> running]... -> done,
  failed or rejected. Its params hold the stages it runs (a snapshot, overrides
  applied), `next_stage`, `stage_runs` (stage -> record id), `approved`,
  `rerun_from`, `overrides` and `input_keys`; its outputs map every finished stage
  to its image key and, once done, "image" to the last stage's.
- each stage: a `RunRecord` of kind "stage" with `parent_id` = the pipeline run.

Store layout:

- ``cas/<h[:2]>/<h>.png``: render-stage outputs, content-addressed (h: sha256);
  ``cas/<h[:2]>/<h>``: the request's reference image and mask as uploaded.
- ``stage-cache/<k[:2]>/<k>.json``: the cache entry of key k (output key, its
  sha256, the stage run that made it, its metrics); written after the output.
- ``stage-cache/<k[:2]>/<k>.png``: hires outputs, which the tile router streams
  straight to the store, so they are addressed by their cache key instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from core.config import ClusterConfig, ModelConfig
from core.errors import NotFoundError, RenderClusterError, RequestError, StorageError
from core.imaging import encode_image
from core.model_source import parse_source
from core.pipelines import (
    PipelineConfig,
    StageConfig,
    StageContractError,
    check_mask_input,
    check_output_size,
    check_stage_inputs,
    check_stage_output,
    stage_cache_key,
)
from core.preprocess import normalise_image, normalise_mask
from core.records import RunRecord, RunRegistry, with_typography
from core.schemas import MAX_SEED, GenerateRequest, LargeRenderJob
from core.store import ArtifactStore
from core.typography.delivery import TypographyReport, deliver_text, inpaint_pass
from core.typography.quiet import quiet_negative_prompt, quiet_zone_mask
from core.typography.schema import TextBox
from core.validation import (
    DEFAULT_IMG2IMG_STRENGTH,
    MAX_CALL_AREA,
    check_size,
    resolve_text,
)

__all__ = [
    "CACHE_PREFIX",
    "PipelineRequest",
    "PipelineRunner",
    "RenderStage",
    "StageJob",
    "StageOutput",
]

logger = logging.getLogger(__name__)
CACHE_PREFIX = "stage-cache"
PREVIEW_MAX_PIXELS = 16_777_216  # hires outputs up to this size are read back for pixel checks
UPLOADS = ("reference", "mask")


@dataclass
class PipelineRequest:
    """What a pipeline run is asked to render; uploads are encoded image bytes."""

    prompt: str
    negative_prompt: str = ""
    seed: int | None = None  # chosen at random when unset
    reference: bytes | None = field(default=None, repr=False)
    mask: bytes | None = field(default=None, repr=False)  # white: repaint
    campaign: str | None = None
    text_boxes: list[TextBox] = field(default_factory=list)  # set on the last stage's output


@dataclass
class StageJob:
    """One stage for `render_stage`: a model call (render) or a large-format job (hires)."""

    pipeline: str
    stage: StageConfig
    model_name: str
    request: GenerateRequest | LargeRenderJob


@dataclass
class StageOutput:
    """What `render_stage` returns.

    A render stage returns `image` (uint8 RGB). A hires stage stores its file under
    its job's `output_key` itself and returns the `width` and `height` it wrote.
    """

    image: np.ndarray | None = field(default=None, repr=False)
    width: int | None = None
    height: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    typography: TypographyReport | None = None  # the gate's report, when the stage set text


RenderStage = Callable[[StageJob], Awaitable[StageOutput]]


@dataclass
class _Output:
    """A finished stage's image on its way to the next stage (bytes read when needed)."""

    key: str
    sha256: str | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)


@dataclass
class _Plan:
    """The state of a pipeline run, as its record holds it."""

    pipeline: PipelineConfig
    next_stage: int
    force_from: int | None  # a re-run recomputes stages from here, cache or not
    input_keys: dict[str, str]
    approved: list[str]  # gates passed (a re-run inherits its original's)
    text_boxes: list[TextBox]

    @classmethod
    def of(cls, run: RunRecord) -> _Plan:
        params = run.params
        pipeline = PipelineConfig.model_validate({"stages": params["stages"]})
        rerun_from = params.get("rerun_from")
        boxes = params.get("text_boxes") or []
        assert isinstance(boxes, list)
        return cls(
            pipeline=pipeline,
            next_stage=int(params["next_stage"]),
            force_from=pipeline.index(str(rerun_from)) if rerun_from else None,
            input_keys=dict(params.get("input_keys") or {}),
            approved=list(params.get("approved") or []),
            text_boxes=[TextBox.model_validate(box) for box in boxes],
        )

    @property
    def final_size(self) -> tuple[int, int]:
        """(width, height) of the last stage: where text is typeset."""
        last = self.pipeline.stages[-1]
        return last.width, last.height


class _GateFailed(Exception):
    """A stage's text failed the typography gate; its output is stored for review."""

    def __init__(self, output_key: str, report: TypographyReport):
        super().__init__(report.message())
        self.output_key = output_key
        self.report = report


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _reason(stage: StageConfig, exc: BaseException) -> str:
    """One line saying why a stage failed, naming the stage."""
    if isinstance(exc, StageContractError):
        return str(exc)
    if isinstance(exc, RenderClusterError):
        return f"stage {stage.name!r}: {exc}"
    return f"stage {stage.name!r}: {type(exc).__name__}: {exc}"


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
        self.render_stage = render_stage
        self.registry = registry if registry is not None else RunRegistry(store)
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
        return self._create(pipeline, self.config.pipelines[pipeline], request)

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
        plan = _Plan.of(original)
        try:
            plan.pipeline.index(from_stage)
        except KeyError as exc:
            raise RequestError("stage", exc.args[0]) from None
        pipeline = plan.pipeline
        if overrides:
            try:
                pipeline = pipeline.with_overrides(from_stage, overrides)
            except KeyError as exc:
                raise RequestError("overrides", exc.args[0]) from None
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"][2:]) or from_stage
                message = first["msg"].removeprefix("Value error, ")
                raise RequestError("overrides", f"{where}: {message}") from None
        uploads = {item: self.store.get_bytes(key) for item, key in plan.input_keys.items()}
        request = PipelineRequest(
            prompt=original.prompt,
            negative_prompt=original.negative_prompt,
            seed=original.seed,
            reference=uploads.get("reference"),
            mask=uploads.get("mask"),
            campaign=original.campaign,
            text_boxes=plan.text_boxes,
        )
        rerun = {
            "rerun_from": from_stage,
            "overrides": dict(overrides or {}),
            "approved": plan.approved,
        }
        return self._create(str(original.pipeline), pipeline, request, rerun, parent_id=run_id)

    def _create(
        self,
        name: str,
        pipeline: PipelineConfig,
        request: PipelineRequest,
        rerun: dict[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> RunRecord:
        for stage in pipeline.stages:
            self._check_stage(stage)
        self._check_request(name, pipeline, request)
        input_keys, inputs = {}, {}
        for item in UPLOADS:
            data = getattr(request, item)
            if data is not None:
                input_keys[item] = self.store.put_content_addressed(data)
                inputs[item] = _sha256(data)
        model_name, model = self._model(pipeline.stages[-1])
        record = RunRecord(
            kind="render",
            status="running",
            model=model_name,
            model_source=model.source,
            model_revision=parse_source(model.source).revision,
            family=model.family,
            pipeline=name,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=request.seed if request.seed is not None else secrets.randbelow(MAX_SEED),
            params={
                "stages": [stage.model_dump(mode="json") for stage in pipeline.stages],
                "next_stage": 0,
                "stage_runs": {},
                "approved": [],
                "rerun_from": None,
                "overrides": {},
                "input_keys": input_keys,
                "text_boxes": [box.model_dump(mode="json") for box in request.text_boxes],
                **(rerun or {}),
            },
            inputs=inputs,
            parent_id=parent_id,
            campaign=request.campaign,
        )
        self.registry.save(record)
        return record

    def _check_stage(self, stage: StageConfig) -> None:
        """The stage's model exists and its size and steps fit the model and the limits."""
        _, model = self._model(stage)
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
            with Image.open(io.BytesIO(data)) as image:
                pixels = image.width * image.height
        except Image.DecompressionBombError:
            pixels = limits.max_upload_pixels + 1
        except (UnidentifiedImageError, OSError) as exc:
            raise RequestError(item, f"not a readable image ({exc})") from None
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
        run, gate = self._awaiting(run_id)
        approved = [*(name for name in _Plan.of(run).approved if name != gate), gate]
        run = run.model_copy(
            update={"status": "running", "params": {**run.params, "approved": approved}}
        )
        self.registry.save(run)
        return await self.advance(run_id)

    def reject(self, run_id: str, reason: str = "") -> RunRecord:
        """End a run awaiting approval with status rejected (the reason goes in `error`)."""
        run, gate = self._awaiting(run_id)
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
        stage_runs = self.pipeline_run(run_id).params["stage_runs"]
        assert isinstance(stage_runs, dict)
        return [self.registry.get(str(stage_id)) for stage_id in stage_runs.values()]

    def _awaiting(self, run_id: str) -> tuple[RunRecord, str]:
        run = self.pipeline_run(run_id)
        if run.status != "awaiting_approval":
            raise RequestError("id", f"run {run_id} is {run.status}, not awaiting approval")
        plan = _Plan.of(run)
        return run, plan.pipeline.stages[plan.next_stage - 1].name

    async def _advance(self, run: RunRecord) -> RunRecord:
        plan = _Plan.of(run)
        stages = plan.pipeline.stages
        previous = None
        if plan.next_stage > 0:
            previous = _Output(run.outputs[stages[plan.next_stage - 1].name])
        for index in range(plan.next_stage, len(stages)):
            stage = stages[index]
            started = time.perf_counter()
            try:
                record, output = await self._stage(run, plan, index, previous)
            except StorageError as exc:
                self._save_quietly(self._failed(run, stage, str(exc)))
                raise
            except asyncio.CancelledError:
                self._save_quietly(self._failed(run, stage, f"stage {stage.name!r}: cancelled"))
                raise
            except Exception as exc:  # before the stage had a record: a bad stage or input
                return self._save(self._failed(run, stage, _reason(stage, exc)))
            if output is None:  # the stage failed and its record says why
                return self._save(self._failed(run, stage, str(record.error), record.id))
            run = self._after_stage(run, stage, index, record, output.key, started)
            previous = output
            if stage.approval == "required" and (
                stage.name not in plan.approved
                or (plan.force_from is not None and index >= plan.force_from)
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
        output_key: str,
        started: float,
    ) -> RunRecord:
        elapsed = time.perf_counter() - started
        stage_runs = {**run.params["stage_runs"], stage.name: record.id}
        counter = "cache_hits" if record.cache == "hit" else "cache_misses"
        return run.model_copy(
            update={
                "params": {**run.params, "next_stage": index + 1, "stage_runs": stage_runs},
                "outputs": {**run.outputs, stage.name: output_key},
                "timings": {
                    **run.timings,
                    f"{stage.name}_s": round(elapsed, 4),
                    "total_s": round(run.timings.get("total_s", 0.0) + elapsed, 4),
                },
                "metrics": {**run.metrics, counter: run.metrics.get(counter, 0) + 1},
            }
        )

    @staticmethod
    def _failed(
        run: RunRecord, stage: StageConfig, error: str, stage_run: str | None = None
    ) -> RunRecord:
        """The run, failed at `stage` with `error` (linking the stage's record if it has one)."""
        params = run.params
        if stage_run is not None:
            params = {**params, "stage_runs": {**params["stage_runs"], stage.name: stage_run}}
        return run.model_copy(update={"status": "failed", "error": error, "params": params})

    def _save(self, record: RunRecord) -> RunRecord:
        self.registry.save(record)
        return record

    def _save_quietly(self, record: RunRecord) -> None:
        """Save a failure record if the store still works (the caller raises anyway)."""
        try:
            self.registry.save(record)
        except StorageError as exc:
            logger.warning("could not record run %s as failed: %s", record.id, exc)

    # -- one stage -----------------------------------------------------------------

    def _model(self, stage: StageConfig) -> tuple[str, ModelConfig]:
        name = stage.model if stage.model is not None else self.config.styles.get(str(stage.style))
        if name is None or name not in self.config.models:
            what = f"model {stage.model!r}" if stage.model is not None else f"style {stage.style!r}"
            raise RequestError(f"stages.{stage.name}", f"{what} is not in the cluster config")
        return name, self.config.models[name]

    async def _stage(
        self, run: RunRecord, plan: _Plan, index: int, previous: _Output | None
    ) -> tuple[RunRecord, _Output | None]:
        """Take one stage from the cache or render it; return its record and output.

        A stage that fails returns its failed record and no output; `StorageError`
        is raised (the store cannot record anything).
        """
        stage = plan.pipeline.stages[index]
        started = time.perf_counter()
        model_name, model = self._model(stage)
        seed = stage.seed if stage.seed is not None else int(run.seed or 0)
        inputs = self._input_hashes(stage, run, previous)
        params = {**self._params(stage, model), **self._text_params(plan, index)}
        negative = run.negative_prompt
        if plan.text_boxes:  # every model pass keeps letters out of the boxes
            negative = quiet_negative_prompt(negative)
        key = stage_cache_key(
            model.source,
            parse_source(model.source).revision,
            {**params, "prompt": run.prompt, "negative_prompt": negative},
            seed,
            inputs,
        )
        record = RunRecord(
            kind="stage",
            status="done",
            model=model_name,
            model_source=model.source,
            model_revision=parse_source(model.source).revision,
            family=model.family,
            style=stage.style,
            pipeline=run.pipeline,
            stage=stage.name,
            prompt=run.prompt,
            negative_prompt=negative,
            params=params,
            seed=seed,
            inputs=inputs,
            parent_id=run.id,
            campaign=run.campaign,
        )
        entry_key = f"{CACHE_PREFIX}/{key[:2]}/{key}.json"
        forced = plan.force_from is not None and index >= plan.force_from
        entry = None if forced else self._cache_entry(entry_key)
        if entry is not None:
            record = record.model_copy(
                update={
                    "cache": "hit",
                    "outputs": {"image": entry["output"], "cache_entry": entry_key},
                    "metrics": entry["metrics"],
                    "timings": {"total_s": round(time.perf_counter() - started, 4)},
                    "typography": entry.get("typography"),
                }
            )
            return self._save(record), _Output(entry["output"], entry["sha256"])
        record = record.model_copy(update={"cache": "miss"})
        try:
            job = self._job(
                run, plan, stage, model_name, model, params, seed, previous, key, record
            )
            result = await self._with_text(plan, index, job, await self.render_stage(job))
            output = self._store_output(stage, job, result)
            report = result.typography
            if report is not None and not report.passed:
                raise _GateFailed(output.key, report)
            self.store.put_bytes(
                entry_key,
                json.dumps(
                    {
                        "cache_key": key,
                        "output": output.key,
                        "sha256": output.sha256,
                        "stage_run": record.id,
                        "metrics": result.metrics,
                        "typography": None if report is None else report.model_dump(mode="json"),
                    }
                ).encode(),
            )
        except _GateFailed as exc:  # kept for review, never cached nor passed on
            reviewed = record.model_copy(
                update={
                    "outputs": {"image": exc.output_key},
                    "timings": {"total_s": round(time.perf_counter() - started, 4)},
                }
            )
            return self._save(with_typography(reviewed, exc.report)), None
        except Exception as exc:
            failed = record.model_copy(
                update={
                    "status": "failed",
                    "error": _reason(stage, exc),
                    "timings": {"total_s": round(time.perf_counter() - started, 4)},
                }
            )
            if isinstance(exc, StorageError):
                self._save_quietly(failed)
                raise
            return self._save(failed), None
        record = record.model_copy(
            update={
                "outputs": {"image": output.key, "cache_entry": entry_key},
                "metrics": result.metrics,
                "timings": {
                    **result.timings,
                    "total_s": round(time.perf_counter() - started, 4),
                },
            }
        )
        if report is not None:
            record = with_typography(record, report)
        return self._save(record), output

    def _text_params(self, plan: _Plan, index: int) -> dict[str, Any]:
        """What a stage's output owes to the run's text boxes (part of its cache key)."""
        if not plan.text_boxes:
            return {}
        stage, params = plan.pipeline.stages[index], {}
        if stage.quiet_zone == "inpaint":
            spec = self.config.typography.spec(plan.text_boxes)
            params["quiet_zone"] = {
                "boxes": [list(box) for box in spec.quiet_boxes(plan.final_size)],
                "margin": self.config.typography.quiet_margin,
                "strength": self.config.typography.quiet_strength,
            }
        if index == len(plan.pipeline.stages) - 1:
            params["text_boxes"] = [box.model_dump(mode="json") for box in plan.text_boxes]
            params["typography"] = self.config.typography.model_dump(
                mode="json", include={"font_dir", "gate", "stray_text"}
            )
        return params

    async def _with_text(
        self, plan: _Plan, index: int, job: StageJob, result: StageOutput
    ) -> StageOutput:
        """A render stage's output with its quiet zone inpainted and, last, its text delivered.

        A hires stage's text is composited by its tile router, which reports the gate.
        """
        request = job.request
        if not plan.text_boxes or not isinstance(request, GenerateRequest):
            return result
        assert result.image is not None
        typography = self.config.typography
        spec = typography.spec(plan.text_boxes)
        stage, image = job.stage, result.image
        timings = dict(result.timings)

        async def render(call: GenerateRequest) -> np.ndarray:
            rendered = await self.render_stage(dataclasses.replace(job, request=call))
            assert rendered.image is not None
            return rendered.image

        if stage.quiet_zone == "inpaint":
            started = time.perf_counter()
            size = (stage.width, stage.height)
            mask = quiet_zone_mask(spec.quiet_boxes(plan.final_size), size, typography.quiet_margin)
            quiet = dataclasses.replace(
                request,
                mode="inpaint",
                init_image=image,
                mask=mask,
                strength=typography.quiet_strength,
            )
            image = await render(quiet)
            timings["quiet_zone_s"] = round(time.perf_counter() - started, 4)
        report = None
        if index == len(plan.pipeline.stages) - 1:
            started = time.perf_counter()
            _, model = self._model(stage)
            limit = model.max_pixels_per_call or MAX_CALL_AREA * model.native_resolution**2
            img2img = inpaint_pass(render, request, model.latent_factor, limit)
            image = np.array(image, copy=True)
            report = await deliver_text(image, spec, img2img)
            timings["text_s"] = round(time.perf_counter() - started, 4)
        return dataclasses.replace(result, image=image, timings=timings, typography=report)

    def _cache_entry(self, entry_key: str) -> dict[str, Any] | None:
        """The cache entry under `entry_key` if it and its output are both stored."""
        try:
            entry = json.loads(self.store.get_bytes(entry_key))
        except NotFoundError:
            return None
        except ValueError:  # not JSON: never written by us; recompute and overwrite it
            return None
        return entry if self.store.exists(entry["output"]) else None

    def _load(self, output: _Output) -> np.ndarray:
        """The output's pixels, reading its bytes once (which also gives its sha256)."""
        if output.pixels is None:
            data = self.store.get_bytes(output.key)
            output.sha256, output.pixels = _sha256(data), _decode_png(data)
        return output.pixels

    def _input_hashes(
        self, stage: StageConfig, run: RunRecord, previous: _Output | None
    ) -> dict[str, str]:
        hashes = {}
        for item in stage.consumes:
            if item == "previous":
                assert previous is not None  # PipelineConfig: the first stage has no 'previous'
                if previous.sha256 is None:
                    self._load(previous)
                hashes[item] = str(previous.sha256)
            else:
                hashes[item] = run.inputs[item]
        return hashes

    def _params(self, stage: StageConfig, model: ModelConfig) -> dict[str, Any]:
        """Every parameter the stage renders with, defaults resolved (the cache key's)."""
        params: dict[str, Any] = {
            "kind": stage.kind,
            "width": stage.width,
            "height": stage.height,
            "steps": stage.steps if stage.steps is not None else model.default_steps,
            "guidance": stage.guidance if stage.guidance is not None else model.default_guidance,
            "scheduler": model.scheduler,
            "dtype": model.dtype,
            "family": model.family,
        }
        if stage.kind == "hires":
            strength = stage.strength
            if strength is None:
                strength = self.config.tiling.refine_strength
            params.update(
                mode="hires",
                strength=strength,
                tile_size=model.native_resolution,
                align=model.latent_factor,
                format="png",
            )
        elif stage.image_input is not None:
            params.update(
                mode="inpaint" if "mask" in stage.consumes else "img2img",
                strength=stage.strength if stage.strength is not None else DEFAULT_IMG2IMG_STRENGTH,
            )
        else:
            params["mode"] = "txt2img"
        return params

    def _job(
        self,
        run: RunRecord,
        plan: _Plan,
        stage: StageConfig,
        model_name: str,
        model: ModelConfig,
        params: dict[str, Any],
        seed: int,
        previous: _Output | None,
        key: str,
        record: RunRecord,
    ) -> StageJob:
        """The stage's inputs prepared and checked, as a job for `render_stage`."""
        image = mask = None
        if stage.image_input == "previous":
            assert previous is not None
            pixels = self._load(previous)
            image = (
                pixels
                if stage.kind == "hires"
                else normalise_image(Image.fromarray(pixels), stage.width, stage.height)
            )
        elif stage.image_input == "reference":
            data = self.store.get_bytes(plan.input_keys["reference"])
            image = normalise_image(data, stage.width, stage.height, field="reference")
        if "mask" in stage.consumes:
            data = self.store.get_bytes(plan.input_keys["mask"])
            mask = normalise_mask(data, stage.width, stage.height)
        check_stage_inputs(stage, image, mask)
        common = {
            "prompt": run.prompt,
            "negative_prompt": record.negative_prompt,
            "width": stage.width,
            "height": stage.height,
            "steps": params["steps"],
            "guidance": params["guidance"],
            "seed": seed,
        }
        request: GenerateRequest | LargeRenderJob
        if stage.kind == "hires":
            request = LargeRenderJob(
                job_id=record.id,
                model_name=model_name,
                tile_size=model.native_resolution,
                native_resolution=model.native_resolution,
                align=model.latent_factor,
                output_key=f"{CACHE_PREFIX}/{key[:2]}/{key}.png",
                mode="hires",
                strength=params["strength"],
                base_image=image,
                format="png",
                max_in_flight=self.config.tiling.max_in_flight,
                max_attempts=self.config.tiling.max_attempts,
                text=self.config.typography.spec(plan.text_boxes) if plan.text_boxes else None,
                **common,
            )
        else:
            request = GenerateRequest(
                mode=params["mode"],
                strength=params.get("strength", DEFAULT_IMG2IMG_STRENGTH),
                init_image=image,
                mask=mask,
                **common,
            )
        return StageJob(str(run.pipeline), stage, model_name, request)

    def _store_output(self, stage: StageConfig, job: StageJob, result: StageOutput) -> _Output:
        """Check the stage's output contract and store it; nothing is left if it fails."""
        if isinstance(job.request, GenerateRequest):
            check_stage_output(stage, result.image)
            assert result.image is not None
            data = encode_image(result.image, "png")
            key = self.store.put_content_addressed(data, ".png")
            return _Output(key, _sha256(data), result.image)
        key, sha = job.request.output_key, None
        try:
            if result.width is None or result.height is None:
                raise StageContractError(stage.name, "size", "the renderer reported no size")
            check_output_size(stage, result.width, result.height)
            if result.width * result.height <= PREVIEW_MAX_PIXELS:
                data = self.store.get_bytes(key)
                check_stage_output(stage, _decode_png(data))
                sha = _sha256(data)
        except StageContractError:
            self.store.delete(key)
            raise
        return _Output(key, sha)
