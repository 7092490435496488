"""The run records of renders, built in one place for every caller.

A render through the API, a campaign item and anything else that renders a
`RenderRequestBody` get the same record fields from these functions; the
caller only labels the record (`RecordLabels`: kind, campaign, extra params).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from core.config import ModelConfig
from core.hires_options import LANCZOS
from core.records import RunRecord, model_fields, with_typography
from core.remote.record import provider_fields
from core.schemas import LargeRenderJob, LargeRenderResult, RenderRequestBody, UpscaleJob
from core.typography.delivery import TypographyReport
from core.validation import ResolvedRender

__all__ = [
    "RecordLabels",
    "finished_large_record",
    "large_record",
    "single_record",
    "upscale_record",
    "with_report",
]

RecordKind = Literal["render", "hires", "campaign-item"]


@dataclass(frozen=True)
class RecordLabels:
    """How a caller labels a render's record: its kind, campaign and extra params."""

    kind: RecordKind | None = None  # None: "render" for one call, "hires" for a large job
    campaign: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None


def single_record(
    run_id: str,
    resolved: ResolvedRender,
    body: RenderRequestBody,
    labels: RecordLabels,
    **fields: Any,
) -> RunRecord:
    """The done record of a one-call render; `fields` add timings, metrics and outputs."""
    request = resolved.request
    inputs = {}
    for name, array in (("init_image", request.init_image), ("mask", request.mask)):
        if array is not None:
            inputs[name] = hashlib.sha256(array.tobytes()).hexdigest()
    params = {
        "mode": request.mode,
        "width": request.width,
        "height": request.height,
        "steps": request.steps,
        "guidance": request.guidance,
        "strength": request.strength,
        "format": resolved.format,
        "dpi": body.dpi,
        **_text_params(body),
        **sampling_params(request.scheduler, request.loras),
    }
    return RunRecord(
        id=run_id,
        kind=labels.kind or "render",
        status="done",
        **model_fields(resolved.model_name, resolved.model),
        style=body.style,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=request.seed,
        params=params | labels.params,
        inputs=inputs,
        campaign=labels.campaign,
        parent_id=labels.parent_id,
        **fields,
    )


def large_record(
    job: LargeRenderJob, model: ModelConfig, body: RenderRequestBody, labels: RecordLabels
) -> RunRecord:
    """The running record of a large-format job (see `finished_large_record`)."""
    params = {
        "mode": job.mode,
        "width": job.width,
        "height": job.height,
        "steps": job.steps,
        "guidance": job.guidance,
        "strength": job.strength,
        "tile_size": job.tile_size,
        "overlap": job.overlap,
        "format": job.format,
        "dpi": job.dpi,
        "blend": job.blend,
        "colour_match": job.colour_match,
        **_text_params(body),
        **sampling_params(job.scheduler, job.loras),
    }
    if job.base_model_name is not None:  # a hosted base, refined by a local model
        params["refine_model"] = job.model_name
    if job.mode == "hires":
        params["hires_upscaler"] = job.upscaler.model_name if job.upscaler else LANCZOS
    return RunRecord(
        id=job.job_id,
        kind=labels.kind or "hires",
        status="running",
        **model_fields(job.base_model_name or job.model_name, model),
        style=body.style,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        seed=job.seed,
        params=params | labels.params,
        campaign=labels.campaign,
        parent_id=labels.parent_id,
    )


def upscale_record(job: UpscaleJob, model: ModelConfig, status: str = "running") -> RunRecord:
    """The record of an upscale job (see `finished_large_record` for its end)."""
    height, width = job.image.shape[:2]
    return RunRecord(
        id=job.job_id,
        kind="upscale",
        status=status,
        **model_fields(job.model_name, model),
        params={
            "source_width": width,
            "source_height": height,
            "width": width * job.scale,
            "height": height * job.scale,
            "scale": job.scale,
            "passes": job.passes,
            "tile_size": job.tile_size,
            "padding": job.padding,
            "format": job.format,
            "dpi": job.dpi,
        },
        inputs={"image": hashlib.sha256(job.image.tobytes()).hexdigest()},
    )


def finished_large_record(record: RunRecord, result: LargeRenderResult) -> RunRecord:
    """The record of a finished large job: done, or failed for review if its text failed."""
    final = record.model_copy(
        update={
            "status": "done",
            "timings": result.timings,
            "metrics": result.metrics(),
            "outputs": {"image": result.output_key},
            **provider_fields(result.provider),
        }
    )
    return with_report(final, result.typography)


def with_report(record: RunRecord, report: TypographyReport | None) -> RunRecord:
    """`record` with the typography gate's report, if the render had text boxes."""
    return record if report is None else with_typography(record, report)


def sampling_params(scheduler: str | None, loras: tuple[tuple[str, float], ...]) -> dict[str, Any]:
    """A render's chosen scheduler and LoRA adapters, as its record keeps them (only when
    it chose any, so earlier records and their cache keys stay as they were)."""
    params: dict[str, Any] = {}
    if scheduler is not None:
        params["scheduler"] = scheduler
    if loras:
        params["loras"] = [{"name": name, "scale": scale} for name, scale in loras]
    return params


def _text_params(body: RenderRequestBody) -> dict[str, Any]:
    """The request's text boxes, as the record's params keep them."""
    if not body.text_boxes:
        return {}
    return {"text_boxes": [box.model_dump(mode="json") for box in body.text_boxes]}
