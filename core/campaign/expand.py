"""Expand a manifest into render jobs: items x sizes x variants, in manifest order.

Every job carries an idempotency key: a hash of the campaign, the item id, the
exact request it sends (prompt, size, seed, steps, ...), its pipeline and its
copy text. Re-expanding the same manifest gives the same keys; editing one
item changes only that item's keys. A seed the manifest leaves unset is
derived from the campaign, the item id and the variant number, so variant 0
of an item shares its seed across all of the item's sizes.

Expansion also checks the manifest against the cluster config (models,
styles, pipelines, step and prompt limits, sizes on the latent grid) and
raises one `ManifestError` naming every problem, before anything renders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from core.campaign.manifest import Manifest, ManifestError, ManifestItem
from core.campaign.sizes import is_ratio, resolve_size
from core.config import ClusterConfig, ModelConfig
from core.typography.schema import TextMode
from core.validation import single_pass_pixels

__all__ = ["RenderJob", "derive_seed", "expand_manifest"]

SEED_RANGE = 2**32  # derived seeds stay below this, readable and accepted by every generator


class RenderJob(BaseModel):
    """One image to render: where it comes from in the manifest and what to send."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    key: str = Field(description="Idempotency key: 32 hex digits of a sha256 (see module doc).")
    campaign: str = Field(description="Campaign name.")
    item_id: str = Field(description="Id of the manifest item.")
    item_index: int = Field(ge=0, description="Position of the item in the manifest.")
    size: str = Field(description="Size as the manifest wrote it (16:9, 1920x1080).")
    width: int = Field(ge=1, description="Output width in pixels.")
    height: int = Field(ge=1, description="Output height in pixels.")
    variant: int = Field(ge=0, description="Position among the item's seeds or variants.")
    seed: int = Field(ge=0, description="Seed sent with the request.")
    model: str = Field(description="Model the route resolves to (it fixed the size grid).")
    pipeline: str | None = Field(None, description="Staged pipeline to render through.")
    copy_text: str | None = Field(None, description="Text to typeset over the final image.")
    copy_mode: TextMode = Field("overlay", description="How the copy is delivered.")
    large: bool = Field(
        description="Over the config's single-render limits: use the large-format path."
    )
    request: dict[str, JsonValue] = Field(
        description="The `RenderRequestBody` fields to send (no model or style for a pipeline)."
    )


def derive_seed(campaign: str, item_id: str, variant: int) -> int:
    """The seed of a variant whose seed the manifest leaves unset."""
    digest = hashlib.sha256(f"{campaign}\0{item_id}\0{variant}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_RANGE


def expand_manifest(
    manifest: Manifest, config: ClusterConfig, pipelines: Mapping[str, str] | None = None
) -> list[RenderJob]:
    """Every job of the campaign, in order; `ManifestError` if the config cannot render it.

    `pipelines` maps each pipeline name an item may use to the model whose native
    resolution and latent factor size its renders (its first stage).
    """
    problems: list[str] = []
    jobs: list[RenderJob] = []
    first_of: dict[str, str] = {}
    for index, item in enumerate(manifest.items):
        plan = _plan_item(manifest, index, item, config, pipelines or {}, problems)
        if plan is None:
            continue
        for job, where in plan:
            if job.key in first_of:
                problems.append(
                    f"{where}: renders the same image as {first_of[job.key]} "
                    f"({job.width}x{job.height}, seed {job.seed})"
                )
            else:
                first_of[job.key] = where
                jobs.append(job)
    if problems:
        raise ManifestError(f"campaign {manifest.campaign!r}", list(dict.fromkeys(problems)))
    return jobs


@dataclass
class _Route:
    style: str | None
    model: str | None
    pipeline: str | None
    where: str  # "items[3]" or "defaults": who chose the route


def _plan_item(
    manifest: Manifest,
    index: int,
    item: ManifestItem,
    config: ClusterConfig,
    pipelines: Mapping[str, str],
    problems: list[str],
) -> list[tuple[RenderJob, str]] | None:
    """The item's jobs, each with the manifest path of its size; None without a model.

    Problems go to `problems`; jobs are still planned for the sizes that are fine, so
    that repeated renders are found in the same pass.
    """
    at = f"items[{index}]"
    route = _route(item, manifest, at)
    model_name = _resolve_model(route, config, pipelines, problems)
    common = _common_request(item, manifest, route)
    _check_limits(item, common, at, config, problems)
    if model_name is None:
        return None
    limits = config.limits
    copy_mode = item.copy_mode or manifest.defaults.copy_mode
    copy = item.copy_text if copy_mode == "overlay" else f"{item.copy_text}\0{copy_mode}"
    plan = []
    for where, spec, width, height in _pixel_sizes(
        item, manifest, at, model_name, config, problems
    ):
        for variant, seed in enumerate(_seeds(manifest, item)):
            request = common | {"width": width, "height": height, "seed": seed}
            job = RenderJob(
                key=_job_key(manifest.campaign, str(item.id), request, route.pipeline, copy),
                campaign=manifest.campaign,
                item_id=str(item.id),
                item_index=index,
                size=spec,
                width=width,
                height=height,
                variant=variant,
                seed=seed,
                model=model_name,
                pipeline=route.pipeline,
                copy_text=item.copy_text,
                copy_mode=copy_mode,
                large=(
                    width > limits.max_width
                    or height > limits.max_height
                    or width * height > limits.max_pixels
                ),
                request=request,
            )
            plan.append((job, where))
    return plan


def _common_request(item: ManifestItem, manifest: Manifest, route: _Route) -> dict[str, JsonValue]:
    """The request fields every job of the item shares (all but size and seed)."""
    defaults = manifest.defaults
    negative = (
        item.negative_prompt if item.negative_prompt is not None else defaults.negative_prompt
    )
    optional = {
        "negative_prompt": negative or None,
        "steps": item.steps if item.steps is not None else defaults.steps,
        "guidance": item.guidance if item.guidance is not None else defaults.guidance,
        "style": route.style,
        "model": route.model,
    }
    common: dict[str, JsonValue] = {"prompt": item.prompt, "format": defaults.format}
    return common | {name: value for name, value in optional.items() if value is not None}


def _check_limits(
    item: ManifestItem,
    request: Mapping[str, JsonValue],
    at: str,
    config: ClusterConfig,
    problems: list[str],
) -> None:
    """Steps and prompt length within the config's limits."""
    limits = config.limits
    steps = request.get("steps")
    if isinstance(steps, int) and steps > limits.max_steps:
        source = at if item.steps is not None else "defaults"
        problems.append(f"{source}.steps: {steps} is over the limit of {limits.max_steps}")
    if len(item.prompt) > limits.max_prompt_chars:
        problems.append(
            f"{at}.prompt: {len(item.prompt)} characters, over the limit of "
            f"{limits.max_prompt_chars}"
        )


def _pixel_sizes(
    item: ManifestItem,
    manifest: Manifest,
    at: str,
    model_name: str,
    config: ClusterConfig,
    problems: list[str],
) -> list[tuple[str, str, int, int]]:
    """(manifest path, spec, width, height) of each size on the model's grid."""
    model = config.models[model_name]
    where = at if item.sizes is not None else "defaults"
    sizes = item.sizes if item.sizes is not None else manifest.defaults.sizes
    base = manifest.defaults.base_size or model.native_resolution
    pixels = []
    for number, spec in enumerate(sizes):
        width, height = resolve_size(spec, base, model.size_step)
        if off_grid := _grid_problems(spec, width, height, model_name, model):
            problems.extend(f"{where}.sizes[{number}]: {message}" for message in off_grid)
        else:
            pixels.append((f"{where}.sizes[{number}]", spec, width, height))
    return pixels


def _route(item: ManifestItem, manifest: Manifest, at: str) -> _Route:
    """The item's own style/model/pipeline if it names one, else the defaults'."""
    if item.style is not None or item.model is not None or item.pipeline is not None:
        return _Route(item.style, item.model, item.pipeline, at)
    defaults = manifest.defaults
    return _Route(defaults.style, defaults.model, defaults.pipeline, "defaults")


def _resolve_model(
    route: _Route, config: ClusterConfig, pipelines: Mapping[str, str], problems: list[str]
) -> str | None:
    """The model that sizes the route's renders, or None with the reason in `problems`."""
    if route.pipeline is not None:
        model = pipelines.get(route.pipeline)
        if model is None:
            known = ", ".join(sorted(pipelines)) or "none configured"
            problems.append(
                f"{route.where}.pipeline: {route.pipeline!r} is not one of the pipelines ({known})"
            )
        elif model not in config.models:
            problems.append(
                f"{route.where}.pipeline: {route.pipeline!r} starts with model {model!r}, "
                "which the config does not define"
            )
            model = None
        return model
    try:
        return config.resolve_model(route.model, route.style)
    except KeyError as exc:
        field = "model" if route.model is not None else "style"
        problems.append(f"{route.where}.{field}: {exc.args[0]}")
        return None


def _grid_problems(
    spec: str, width: int, height: int, model_name: str, model: ModelConfig
) -> list[str]:
    """Exact single-pass sizes must sit on the model's latent grid (ratios are snapped to
    it); large renders (over `single_pass_pixels`) take any size."""
    if is_ratio(spec) or width * height > single_pass_pixels(model):
        return []
    factor = model.size_step
    problems = []
    for side, value in (("width", width), ("height", height)):
        if value % factor:
            below = value // factor * factor
            problems.append(
                f"{spec}: {side} {value} is not a multiple of {factor} (the "
                f"{model.size_step_name} of model {model_name!r}); nearest are "
                f"{max(below, factor)} and {below + factor}"
            )
    return problems


def _seeds(manifest: Manifest, item: ManifestItem) -> list[int]:
    """Item seeds, else item variants, else default seeds, else default variants."""
    defaults = manifest.defaults
    if item.seeds is not None:
        return item.seeds
    if item.variants is None and defaults.seeds is not None:
        return defaults.seeds
    count = item.variants if item.variants is not None else defaults.variants
    return [derive_seed(manifest.campaign, str(item.id), variant) for variant in range(count)]


def _job_key(
    campaign: str,
    item_id: str,
    request: Mapping[str, JsonValue],
    pipeline: str | None,
    copy_text: str | None,
) -> str:
    content = {
        "campaign": campaign,
        "item": item_id,
        "request": request,
        "pipeline": pipeline,
        "copy": copy_text,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
