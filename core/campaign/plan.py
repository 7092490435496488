"""Campaign planning: the manifest's jobs checked against what the runner can render.

Also the fixed store keys of a campaign's renders and each job's run record. No Ray.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from core.campaign import layout
from core.campaign.expand import RenderJob, expand_manifest
from core.campaign.manifest import Manifest, ManifestError
from core.campaign.sizes import is_ratio
from core.config import ClusterConfig
from core.errors import RequestError
from core.pipelines import PipelineConfig
from core.records import RunRecord, model_fields
from core.schemas import RenderRequestBody
from core.typography import Anchor, TextBox
from core.typography.schema import TextMode
from core.validation import check_size, is_large, resolve_large, resolve_render, resolve_text

__all__ = [
    "COPY_ANCHOR",
    "copy_box",
    "fit_pipeline",
    "is_large_job",
    "job_problems",
    "item_params",
    "job_record",
    "manifest_key",
    "pipeline_models",
    "plan_campaign",
    "render_key",
    "request_body",
    "stats_key",
]

ASPECT_MARGIN = 0.01  # fitted pipeline stages keep the item's aspect ratio this closely
_CHECK_RUN_ID = "20000101-000000-000000-00000000"  # stands in for a run id in dry-run checks
COPY_ANCHOR = Anchor(x=0.06, y=0.68, w=0.88, h=0.26)
"""Where an item's copy goes: a band across the bottom of every size."""


# -- names and keys ---------------------------------------------------------------


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
    """Whether a job goes through the tile router: over the single-render limits, or large
    by the rule every render follows (`core.validation.is_large`)."""
    return job.large or is_large(request_body(job), config)


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
            check_size(stage.width, stage.height, model, config, on_grid=stage.kind != "hires")
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
            fitted = _grid_size(stage.width * stage.height, width / height, model.size_step)
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


def copy_box(text: str, mode: TextMode = "overlay") -> TextBox:
    """A campaign item's copy as a text box centred in the lower band of the image."""
    try:
        return TextBox(
            copy=text,
            anchor=COPY_ANCHOR,
            align="center",
            valign="bottom",
            min_cap_height_px=8,
            mode=mode,
        )
    except ValidationError as exc:
        raise RequestError("copy", exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


def request_body(job: RenderJob) -> RenderRequestBody:
    """The render request of a job, its copy as a text box."""
    boxes = [copy_box(job.copy_text, job.copy_mode)] if job.copy_text else []
    return RenderRequestBody(**job.request, text_boxes=boxes)


def item_params(job: RenderJob) -> dict[str, Any]:
    """What a campaign item's record keeps of the item, beside the render's own params."""
    return {
        "item_id": job.item_id,
        "size": job.size,
        "variant": job.variant,
        "job_key": job.key,
        "width": job.width,
        "height": job.height,
        "format": job.request["format"],
        "copy": job.copy_text,
    }


def job_record(job: RenderJob, config: ClusterConfig, run_id: str, **fields: Any) -> RunRecord:
    """The campaign-item record of `job` (status done unless `fields` say otherwise)."""
    model = config.models[job.model]
    request = job.request
    params = item_params(job)
    base: dict[str, Any] = {
        "id": run_id,
        "kind": "campaign-item",
        "status": "done",
        **model_fields(job.model, model),
        "style": request.get("style"),
        "pipeline": job.pipeline,
        "prompt": str(request["prompt"]),
        "negative_prompt": str(request.get("negative_prompt") or ""),
        "seed": job.seed,
        "campaign": job.campaign,
    }
    params |= fields.pop("params", {})
    return RunRecord(**(base | fields), params=params)
