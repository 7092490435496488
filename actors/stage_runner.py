"""`StageRunner`: one stage of a pipeline run, from the cache or rendered, checked and stored.

It computes the stage cache key (`core.pipelines.stage_cache_key`). On a hit it
reuses the stored output and the stage record says cache "hit"; otherwise it
checks the stage's inputs, renders it through the injected `render_stage`
callable (with the run's text boxes: quiet zone, then the text after the last
stage), checks the output and stores it. No Ray.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import numpy as np
from PIL import Image

from actors.pipeline_state import (
    CACHE_PREFIX,
    GateFailed,
    RenderStage,
    RunPlan,
    StageImage,
    StageJob,
    StageOutput,
    decode_png,
    failure_reason,
    save_quietly,
    sha256_hex,
    stage_model,
)
from core.config import ClusterConfig, ModelConfig
from core.errors import NotFoundError, StorageError
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
from core.records import RunRecord, RunRegistry, model_fields, with_typography
from core.schemas import GenerateRequest, LargeRenderJob
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
        return record

    async def run(
        self, run: RunRecord, plan: RunPlan, index: int, previous: StageImage | None
    ) -> tuple[RunRecord, StageImage | None]:
        """Take one stage from the cache or render it; return its record and output.

        A stage that fails returns its failed record and no output; `StorageError`
        is raised (the store cannot record anything).
        """
        stage = plan.pipeline.stages[index]
        started = time.perf_counter()
        model_name, model = stage_model(self.config, stage)
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
            return self._save(record), StageImage(entry["output"], entry["sha256"])
        record = record.model_copy(update={"cache": "miss"})
        try:
            job = self._job(
                run, plan, stage, model_name, model, params, seed, previous, key, record
            )
            result = await self._with_text(plan, index, job, await self.render_stage(job))
            output = self._store_output(stage, job, result)
            report = result.typography
            if report is not None and not report.passed:
                raise GateFailed(output.key, report)
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
        except GateFailed as exc:  # kept for review, never cached nor passed on
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
                    "error": failure_reason(stage, exc),
                    "timings": {"total_s": round(time.perf_counter() - started, 4)},
                }
            )
            if isinstance(exc, StorageError):
                save_quietly(self.registry, failed)
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

    def _text_params(self, plan: RunPlan, index: int) -> dict[str, Any]:
        """What a stage's output owes to the run's text boxes (part of its cache key)."""
        if not plan.text_boxes:
            return {}
        stage, params = plan.pipeline.stages[index], {}
        if stage.quiet_zone == "inpaint":
            spec = self.config.typography.spec(plan.text_boxes)
            params["quiet_zone"] = {
                "boxes": [list(box) for box in quiet_boxes(spec, plan.final_size)],
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
        self, plan: RunPlan, index: int, job: StageJob, result: StageOutput
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
            boxes = quiet_boxes(spec, plan.final_size)
            mask = quiet_zone_mask(boxes, size, typography.quiet_margin)
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
            _, model = stage_model(self.config, stage)
            img2img = inpaint_pass(render, request, model.latent_factor, max_call_pixels(model))
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
        plan: RunPlan,
        stage: StageConfig,
        model_name: str,
        model: ModelConfig,
        params: dict[str, Any],
        seed: int,
        previous: StageImage | None,
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
