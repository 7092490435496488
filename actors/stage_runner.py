"""`StageRunner`: one stage of a pipeline run, from the cache or rendered, checked and stored.

It computes the stage cache key (`core.pipelines.stage_cache_key`). On a hit it
reuses the stored output and the stage record says cache "hit"; otherwise it
checks the stage's inputs, renders it through the injected `render_stage`
callable (with the run's text boxes: quiet zone, then the text after the last
stage), checks the output, stores it and writes its cache entry. An output whose
text failed the typography gate is stored for review, never cached nor passed
on. Either way the stored output stays as it is and the stage run delivers a copy
tagged with its own run id and parameters (`actors.stage_delivery`). No Ray.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from PIL import Image

from actors.pipeline_state import (
    CACHE_PREFIX,
    GateFailed,
    PipelineRunState,
    RenderStage,
    StageImage,
    StageJob,
    StageOutput,
    decode_png,
    save_quietly,
    sha256_hex,
    stage_model,
    stage_params,
)
from actors.stage_call import (
    StageCall,
    cache_hit_record,
    done_record,
    failed_record,
    reviewed_record,
)
from actors.stage_delivery import deliver_stage_image
from core import telemetry
from core.config import ClusterConfig
from core.errors import NotFoundError, StorageError
from core.hires_validation import hires_upscaler
from core.imaging import encode_image
from core.model_source import parse_source
from core.pipelines import (
    StageConfig,
    StageContractError,
    check_output_size,
    check_stage_inputs,
    check_stage_output,
    stage_cache_key,
)
from core.preprocess import normalise_image, normalise_mask
from core.records import RunRecord, RunRegistry, model_fields
from core.schemas import GenerateRequest, LargeRenderJob
from core.stage_sampling import stage_sampling
from core.store import ArtifactStore
from core.typography.delivery import deliver_text, inpaint_pass
from core.typography.quiet import quiet_boxes, quiet_negative_prompt, quiet_zone_mask
from core.validation import DEFAULT_IMG2IMG_STRENGTH, max_call_pixels

__all__ = ["StageRunner"]

PREVIEW_MAX_PIXELS = 16_777_216  # hires outputs up to this size are read back for pixel checks


class StageRunner:
    """Runs single stages of pipeline runs for a `PipelineRunner`."""

    def __init__(
        self,
        config: ClusterConfig,
        store: ArtifactStore,
        render_stage: RenderStage,
        registry: RunRegistry,
    ):
        self.config = config
        self.store = store
        self.render_stage = render_stage
        self.registry = registry

    def _save(self, record: RunRecord) -> RunRecord:
        self.registry.save(record)
        if record.cache != "hit":  # a stage taken from the cache rendered nothing
            telemetry.count_ended_render(record)
        return record

    async def run(
        self,
        run: RunRecord,
        state: PipelineRunState,
        index: int,
        previous: StageImage | None,
    ) -> tuple[RunRecord, StageImage | None]:
        """Take one stage from the cache or render it; return its record and output.

        The output is the stored one (shared through the cache); the record names the
        copy this stage run delivers (`actors.stage_delivery`). A stage that fails
        returns its failed record and no output; `StorageError` is raised (the store
        cannot record anything).
        """
        call = self._prepare(run, state, index, previous)
        entry = None if call.forced else self._cache_entry(call.entry_key)
        output: StageImage | None
        try:
            if entry is not None:
                output = StageImage(entry["output"], entry["sha256"])
                record = cache_hit_record(call, entry)
            else:
                call.record = call.record.model_copy(update={"cache": "miss"})
                record, output = await self._rendered(call)
            delivered = await asyncio.to_thread(deliver_stage_image, self.store, record)
        except Exception as exc:
            failed = failed_record(call, exc)
            if isinstance(exc, StorageError):
                save_quietly(self.registry, failed)
                raise
            return self._save(failed), None
        return self._save(delivered), output

    async def _rendered(self, call: StageCall) -> tuple[RunRecord, StageImage | None]:
        """The record and output of a stage rendered now (no output: its text failed the gate,
        the image is kept for review, never cached nor passed on)."""
        try:
            result, output = await self._render(call)
        except GateFailed as exc:
            return reviewed_record(call, exc), None
        return done_record(call, result, output), output

    def _prepare(
        self,
        run: RunRecord,
        state: PipelineRunState,
        index: int,
        previous: StageImage | None,
    ) -> StageCall:
        """The stage's model, seed, inputs, parameters and cache key, and its record so far."""
        started = time.perf_counter()
        stage = state.stages[index]
        model_name, model = stage_model(self.config, stage)
        seed = stage.seed if stage.seed is not None else int(run.seed or 0)
        inputs = self._input_hashes(stage, run, previous)
        params = {**stage_params(self.config, stage, model), **self._text_params(state, index)}
        negative = run.negative_prompt
        if state.text_boxes:  # every model pass keeps letters out of the boxes
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
            **model_fields(model_name, model),
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
        return StageCall(
            run, state, index, previous, model_name, model, seed, params, key, record, started
        )

    async def _render(self, call: StageCall) -> tuple[StageOutput, StageImage]:
        """Render the stage (text included), check and store its output, write its cache entry.

        Raises `GateFailed` when its text failed the gate: the output is stored, not cached.
        """
        job = self._job(call)
        result = await self._with_text(call.state, call.index, job, await self.render_stage(job))
        output = self._store_output(call.stage, job, result)
        report = result.typography
        if report is not None and not report.passed:
            raise GateFailed(output.key, report)
        entry = {
            "cache_key": call.key,
            "output": output.key,
            "sha256": output.sha256,
            "stage_run": call.record.id,
            "metrics": result.metrics,
            "typography": None if report is None else report.model_dump(mode="json"),
        }
        self.store.put_bytes(call.entry_key, json.dumps(entry).encode())
        return result, output

    def _text_params(self, state: PipelineRunState, index: int) -> dict[str, Any]:
        """What a stage's output owes to the run's text boxes (part of its cache key)."""
        if not state.text_boxes:
            return {}
        stage, params = state.stages[index], {}
        typography = self.config.typography
        if stage.quiet_zone == "inpaint":
            spec = typography.spec(state.text_boxes)
            params["quiet_zone"] = {
                "boxes": [list(box) for box in quiet_boxes(spec, state.final_size)],
                "margin": typography.quiet_margin,
                "strength": typography.quiet_strength,
            }
        if index == len(state.stages) - 1:
            params["text_boxes"] = [box.model_dump(mode="json") for box in state.text_boxes]
            params["typography"] = typography.model_dump(
                mode="json", include={"font_dir", "gate", "stray_text"}
            )
        return params

    async def _with_text(
        self, state: PipelineRunState, index: int, job: StageJob, result: StageOutput
    ) -> StageOutput:
        """A render stage's output with its quiet zone inpainted and, last, its text delivered.

        A hires stage's text is composited by its tile router, which reports the gate.
        """
        request = job.request
        if not state.text_boxes or not isinstance(request, GenerateRequest):
            return result
        assert result.image is not None
        spec = self.config.typography.spec(state.text_boxes)
        image, timings, report = result.image, dict(result.timings), None
        hosted: list[dict] = []  # the stage model's further hosted calls, paid for too
        render = functools.partial(self._render_call, job, hosted)
        if job.stage.quiet_zone == "inpaint":
            started = time.perf_counter()
            boxes = quiet_boxes(spec, state.final_size)
            image = await self._quiet_zone(job, request, image, boxes, render)
            timings["quiet_zone_s"] = round(time.perf_counter() - started, 4)
        if index == len(state.stages) - 1:
            started = time.perf_counter()
            _, model = stage_model(self.config, job.stage)
            img2img = inpaint_pass(render, request, model.latent_factor, max_call_pixels(model))
            image = np.array(image, copy=True)
            report = await deliver_text(image, spec, img2img)
            timings["text_s"] = round(time.perf_counter() - started, 4)
        return dataclasses.replace(
            result, image=image, timings=timings, typography=report, extra_providers=hosted
        )

    async def _quiet_zone(
        self,
        job: StageJob,
        request: GenerateRequest,
        image: np.ndarray,
        boxes: list[tuple[float, float, float, float]],
        render: Callable[[GenerateRequest], Awaitable[np.ndarray]],
    ) -> np.ndarray:
        """`image` with the text boxes (canvas fractions) inpainted free of the model's letters."""
        typography = self.config.typography
        size = (job.stage.width, job.stage.height)
        quiet = dataclasses.replace(
            request,
            mode="inpaint",
            init_image=image,
            mask=quiet_zone_mask(boxes, size, typography.quiet_margin),
            strength=typography.quiet_strength,
        )
        return await render(quiet)

    async def _render_call(
        self, job: StageJob, hosted_calls: list[dict], request: GenerateRequest
    ) -> np.ndarray:
        """One more model call of `job`'s model and stage: the image `request` renders (a
        hosted model's call is added to `hosted_calls`, to be paid for in the record)."""
        rendered = await self.render_stage(dataclasses.replace(job, request=request))
        assert rendered.image is not None
        if rendered.provider is not None:
            hosted_calls.append(rendered.provider)
        return rendered.image

    def _cache_entry(self, entry_key: str) -> dict[str, Any] | None:
        """The cache entry under `entry_key` if it and its output are both stored."""
        try:
            entry = json.loads(self.store.get_bytes(entry_key))
        except NotFoundError:
            return None
        except ValueError:  # not JSON: never written by us; recompute and overwrite it
            return None
        return entry if self.store.exists(entry["output"]) else None

    def _load(self, output: StageImage) -> np.ndarray:
        """The output's pixels, reading its bytes once (which also gives its sha256)."""
        if output.pixels is None:
            data = self.store.get_bytes(output.key)
            output.sha256, output.pixels = sha256_hex(data), decode_png(data)
        return output.pixels

    def _input_hashes(
        self, stage: StageConfig, run: RunRecord, previous: StageImage | None
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

    def _job(self, call: StageCall) -> StageJob:
        """The stage's inputs prepared and checked, as a job for `render_stage`."""
        stage, params, model = call.stage, call.params, call.model
        image, mask = self._inputs(call)
        scheduler, loras = stage_sampling(stage, model, self.config.style_loras)
        common = {
            "prompt": call.run.prompt,
            "negative_prompt": call.record.negative_prompt,
            "width": stage.width,
            "height": stage.height,
            "steps": params["steps"],
            "guidance": params["guidance"],
            "seed": call.seed,
            "scheduler": scheduler,
            "loras": loras,
        }
        request: GenerateRequest | LargeRenderJob
        if stage.kind == "hires":
            boxes = call.state.text_boxes
            request = LargeRenderJob(
                job_id=call.record.id,
                model_name=call.model_name,
                tile_size=model.native_resolution,
                native_resolution=model.native_resolution,
                align=model.size_step,
                output_key=f"{CACHE_PREFIX}/{call.key[:2]}/{call.key}.png",
                mode="hires",
                strength=params["strength"],
                base_image=image,
                format="png",
                max_in_flight=self.config.tiling.max_in_flight,
                max_attempts=self.config.tiling.max_attempts,
                text=self.config.typography.spec(boxes) if boxes else None,
                max_call_pixels=max_call_pixels(model),
                upscaler=hires_upscaler(params["hires_upscaler"], self.config),
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
        return StageJob(str(call.run.pipeline), stage, call.model_name, request)

    def _inputs(self, call: StageCall) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The stage's image input and mask, read and sized for it, and checked."""
        stage, input_keys = call.stage, call.state.input_keys
        image = mask = None
        if stage.image_input == "previous":
            assert call.previous is not None
            pixels = self._load(call.previous)
            image = (
                pixels
                if stage.kind == "hires"
                else normalise_image(Image.fromarray(pixels), stage.width, stage.height)
            )
        elif stage.image_input == "reference":
            data = self.store.get_bytes(input_keys["reference"])
            image = normalise_image(data, stage.width, stage.height, field="reference")
        if "mask" in stage.consumes:
            data = self.store.get_bytes(input_keys["mask"])
            mask = normalise_mask(data, stage.width, stage.height)
        check_stage_inputs(stage, image, mask)
        return image, mask

    def _store_output(self, stage: StageConfig, job: StageJob, result: StageOutput) -> StageImage:
        """Check the stage's output contract and store it; nothing is left if it fails."""
        if isinstance(job.request, GenerateRequest):
            check_stage_output(stage, result.image)
            assert result.image is not None
            data = encode_image(result.image, "png")
            key = self.store.put_content_addressed(data, ".png")
            return StageImage(key, sha256_hex(data), result.image)
        key, sha = job.request.output_key, None
        try:
            if result.width is None or result.height is None:
                raise StageContractError(stage.name, "size", "the renderer reported no size")
            check_output_size(stage, result.width, result.height)
            if result.width * result.height <= PREVIEW_MAX_PIXELS:
                data = self.store.get_bytes(key)
                check_stage_output(stage, decode_png(data))
                sha = sha256_hex(data)
        except StageContractError:
            self.store.delete(key)
            raise
        return StageImage(key, sha)
