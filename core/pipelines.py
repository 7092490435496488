"""Pipelines of stages: their config, the stage cache key, and the stage contracts.

A pipeline is an ordered list of stages (draft -> layout -> final -> hires). Each
stage names a model or a style, a size, steps, guidance, strength, what it
consumes (the previous stage's image, the request's reference image, its mask,
or nothing), whether a person must approve its output before the pipeline goes
on, and its kind ('render': one model call; 'hires': the large-format path).

A stage's cache key hashes everything its output depends on (model source and
pinned revision, stage parameters, seed, input artifact hashes), so re-running
a pipeline with one stage changed recomputes that stage and those after it.

The contracts check a stage's inputs (size, mode, mask coverage) and its
output (mode, no NaN, size, not blank) and raise `StageContractError` naming
the stage and the check. This module does not import `core.config` (which
imports it), so models come in as plain mappings.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import RenderClusterError
from core.hires_options import LANCZOS, upscaler_problem
from core.lora_options import LoraChoice
from core.schemas import MAX_SEED

__all__ = [
    "CACHE_KEY_VERSION",
    "PipelineConfig",
    "PipelineName",
    "StageConfig",
    "StageContractError",
    "canonical_json",
    "check_mask_input",
    "check_output_size",
    "check_pipeline_references",
    "check_stage_inputs",
    "check_stage_output",
    "stage_cache_key",
]

NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]{0,38}[a-z0-9])?$"
PipelineName = Annotated[str, Field(pattern=NAME_PATTERN)]
StageInput = Literal["previous", "reference", "mask"]
STAGE_INPUTS: tuple[str, ...] = ("previous", "reference", "mask")
CACHE_KEY_VERSION = 1  # bump when what a stage renders changes for the same key
BLANK_STD = 1.0  # an output whose pixel standard deviation is below this is blank
BLANK_SAMPLE_PIXELS = 1_000_000  # the blank check looks at about this many pixels
ASPECT_TOLERANCE = 0.02  # a hires base may differ this much (relative) in aspect ratio


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class StageConfig(_Strict):
    """One stage of a pipeline: what renders it, at what size, from which inputs."""

    name: str = Field(
        ..., pattern=NAME_PATTERN, description="Stage name, unique in its pipeline (e.g. 'final')."
    )
    model: str | None = Field(None, description="Model that renders the stage (or give style).")
    style: str | None = Field(None, description="Style routed to a model (or give model).")
    kind: Literal["render", "hires"] = Field(
        "render",
        description=(
            "'render': one model call; 'hires': the large-format path (the input upscaled "
            "and refined tile by tile across every replica). Only the last stage may be hires."
        ),
    )
    width: int = Field(..., ge=8, le=262144, description="Output width in pixels.")
    height: int = Field(..., ge=8, le=262144, description="Output height in pixels.")
    steps: int | None = Field(None, ge=1, le=1000, description="Steps (default: the model's).")
    guidance: float | None = Field(
        None, ge=0, le=50, description="Classifier-free guidance (default: the model's)."
    )
    strength: float | None = Field(
        None,
        gt=0,
        le=1,
        description=(
            "How far the stage may move from its image input (default 0.75); for a hires "
            "stage, the per-tile refine strength (default: the model's hires.refine_strength, else "
            "tiling.refine_strength)."
        ),
    )
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Seed of this stage (default: the run's seed)."
    )
    hires_upscaler: str | None = Field(
        None,
        description=(
            "Hires stages: 'lanczos' or an upscaler model that upscales the input before the "
            "tiled refine (default: the stage model's hires.upscaler)."
        ),
    )
    scheduler: str | None = Field(
        None,
        description="A scheduler from the model's `schedulers` allow-list ('default' or unset: "
        "the model's own).",
    )
    loras: list[LoraChoice] | None = Field(
        None,
        description="LoRA adapters from the model's allow-list switched on for this stage "
        "(unset: the style's `style_loras` when the stage names a style; [] for none).",
    )
    consumes: list[StageInput] = Field(
        default_factory=list,
        description=(
            "Inputs: 'previous' (the previous stage's image), 'reference' (the request's "
            "reference image), 'mask' (the request's mask, with one of the two); none: txt2img."
        ),
    )
    quiet_zone: Literal["prompt", "inpaint"] = Field(
        "prompt",
        description=(
            "With text boxes, every stage gets negative-prompt terms that keep letters out; "
            "'inpaint' also repaints the boxes (grown by typography.quiet_margin) in an inpaint "
            "pass after the stage, clearing pseudo-text the model painted there (layout stages)."
        ),
    )
    approval: Literal["required", "none"] = Field(
        "none",
        description=(
            "'required': the pipeline stops after this stage with status "
            "awaiting_approval until the run is approved or rejected."
        ),
    )

    @field_validator("consumes", mode="before")
    @classmethod
    def _known_inputs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            unknown = [item for item in value if item not in STAGE_INPUTS]
            if unknown:
                raise ValueError(
                    f"unknown stage input {unknown[0]!r}; a stage consumes any of "
                    f"{', '.join(STAGE_INPUTS)} (or nothing)"
                )
            if len(set(value)) != len(value):
                raise ValueError(f"consumes lists an input twice: {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StageConfig:
        where = f"stage {self.name!r}"
        if (self.model is None) == (self.style is None):
            raise ValueError(f"{where}: give exactly one of model or style")
        image_inputs = [item for item in self.consumes if item != "mask"]
        if len(image_inputs) > 1:
            raise ValueError(f"{where}: consumes both 'previous' and 'reference'; pick one")
        if "mask" in self.consumes and not image_inputs:
            raise ValueError(
                f"{where}: a mask needs an image to paint into ('previous' or 'reference')"
            )
        if self.kind != "hires" and self.hires_upscaler is not None:
            raise ValueError(f"{where}: hires_upscaler is only used by hires stages")
        if self.kind == "hires" and self.quiet_zone == "inpaint":
            raise ValueError(f"{where}: quiet_zone 'inpaint' runs on render stages, not hires")
        if self.kind == "hires" and any(item != "previous" for item in self.consumes):
            raise ValueError(f"{where}: a hires stage consumes only 'previous' (or nothing)")
        if self.kind == "render" and self.strength is not None and not image_inputs:
            raise ValueError(
                f"{where}: strength {self.strength} needs an image input; add 'previous' or "
                "'reference' to consumes, or drop strength"
            )
        return self

    @property
    def image_input(self) -> Literal["previous", "reference"] | None:
        """The input the stage starts from, if any."""
        for item in self.consumes:
            if item != "mask":
                return item
        return None


class PipelineConfig(_Strict):
    """An ordered list of stages, run one after the other for each request."""

    description: str = Field("", description="What the pipeline is for.")
    stages: list[StageConfig] = Field(..., min_length=1, description="Stages in order.")

    @model_validator(mode="after")
    def _ordered(self) -> PipelineConfig:
        names = [stage.name for stage in self.stages]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(repeated)}")
        first = self.stages[0]
        if "previous" in first.consumes:
            raise ValueError(f"the first stage {first.name!r} cannot consume 'previous'")
        for index, stage in enumerate(self.stages[:-1]):
            if stage.kind == "hires":
                raise ValueError(
                    f"hires stage {stage.name!r} must be the last stage; it is stage "
                    f"{index + 1} of {len(self.stages)}"
                )
        return self

    def index(self, name: str) -> int:
        """Position of the stage called `name`; `KeyError` naming the stages if none."""
        for index, stage in enumerate(self.stages):
            if stage.name == name:
                return index
        raise KeyError(f"no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}")

    def consumes(self, item: str) -> list[str]:
        """Names of the stages that consume `item` ('reference' or 'mask')."""
        return [stage.name for stage in self.stages if item in stage.consumes]

    def with_overrides(self, stage: str, overrides: Mapping[str, Any]) -> PipelineConfig:
        """A copy with `overrides` (e.g. ``{"steps": 40}``) applied to one stage, re-validated.

        Setting `model` clears the stage's `style`, and the other way round.

        Raises `KeyError` for an unknown stage or field and pydantic's `ValidationError`
        for a bad value.
        """
        index = self.index(stage)
        fields = set(StageConfig.model_fields) - {"name"}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise KeyError(
                f"cannot set {', '.join(unknown)} on a stage; settable: {', '.join(sorted(fields))}"
            )
        stages = [s.model_dump() for s in self.stages]
        stages[index] = {**stages[index], **overrides}
        for route, other in (("model", "style"), ("style", "model")):
            if route in overrides and other not in overrides:  # setting one replaces the other
                stages[index][other] = None
        return PipelineConfig.model_validate({"description": self.description, "stages": stages})


class _Model(Protocol):
    latent_factor: int
    family: str


def check_pipeline_references(
    name: str, pipeline: PipelineConfig, models: Mapping[str, _Model], styles: Mapping[str, str]
) -> list[str]:
    """Problems with the models and styles a pipeline names, and its sizes on their grids."""
    problems = []
    families = {model_name: model.family for model_name, model in models.items()}
    for stage in pipeline.stages:
        where = f"pipeline {name!r} stage {stage.name!r}"
        if stage.model is not None and stage.model not in models:
            problems.append(
                f"{where}: model {stage.model!r} is not one of the models "
                f"({', '.join(sorted(models))})"
            )
            continue
        if stage.style is not None and stage.style not in styles:
            problems.append(
                f"{where}: style {stage.style!r} is not one of the styles "
                f"({', '.join(sorted(styles)) or 'none defined'})"
            )
            continue
        model_name = stage.model if stage.model is not None else styles[str(stage.style)]
        factor = models[model_name].size_step
        problem = upscaler_problem(stage.hires_upscaler or LANCZOS, families)
        if problem is not None:
            problems.append(f"{where}: hires_upscaler {problem}")
        if stage.kind == "hires" and models[model_name].family == "remote":
            problems.append(
                f"{where}: model {model_name!r} is hosted; a hires stage refines tile by "
                "tile on a local model"
            )
        for side in ("width", "height"):
            value = getattr(stage, side)
            if value % factor and stage.kind != "hires":  # large renders take any size
                problems.append(
                    f"{where}: {side} {value} is not a multiple of model {model_name!r}'s "
                    f"{models[model_name].size_step_name} {factor}"
                )
    return problems


def _canonical(value: Any) -> Any:
    """JSON-ready value with integral floats as ints (7.0 and 7 hash alike); NaN refused."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot hash the non-finite number {value}")
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    raise TypeError(f"cannot hash a {type(value).__name__} in a stage cache key")


def canonical_json(value: Any) -> bytes:
    """Sorted-key, whitespace-free UTF-8 JSON: equal values give equal bytes."""
    return json.dumps(
        _canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def stage_cache_key(
    model_source: str,
    model_revision: str | None,
    params: Mapping[str, Any],
    seed: int,
    inputs: Mapping[str, str],
) -> str:
    """sha256 (hex) of the canonical JSON of everything a stage's output depends on.

    `params` holds every rendering parameter (prompt, size, steps, guidance,
    strength, mode, scheduler, ...); `inputs` maps input names to the sha256 of
    their artifact bytes.
    """
    payload = {
        "version": CACHE_KEY_VERSION,
        "model": {"source": model_source, "revision": model_revision},
        "params": params,
        "seed": seed,
        "inputs": inputs,
    }
    return hashlib.sha256(canonical_json(payload)).hexdigest()


class StageContractError(RenderClusterError):
    """A stage's input or output broke its contract; names the stage and the check."""

    def __init__(self, stage: str, check: str, message: str):
        super().__init__(stage, check, message)
        self.stage = stage
        self.check = check
        self.message = message

    def __str__(self) -> str:
        return f"stage {self.stage!r}: {self.check} check failed: {self.message}"


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def _check_rgb(stage: str, name: str, image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise StageContractError(
            stage, "mode", f"{name} has shape {image.shape}; expected (height, width, 3) RGB"
        )
    if image.dtype != np.uint8:
        raise StageContractError(stage, "mode", f"{name} is {image.dtype}; expected uint8")


def check_stage_inputs(
    stage: StageConfig, image: np.ndarray | None = None, mask: np.ndarray | None = None
) -> None:
    """Check what a stage is about to consume: presence, mode, size, mask coverage.

    Render stages take their image and mask at the stage size; a hires stage takes
    its base at any size with the stage's aspect ratio (it upscales it).
    """
    name = stage.name
    wanted = stage.image_input
    if wanted is not None and image is None:
        raise StageContractError(name, "inputs", f"consumes {wanted!r} but got no image")
    if "mask" in stage.consumes and mask is None:
        raise StageContractError(name, "inputs", "consumes 'mask' but got no mask")
    if image is not None:
        _check_rgb(name, "image input", image)
        if stage.kind == "hires":
            aspect, target = image.shape[1] / image.shape[0], stage.width / stage.height
            if abs(aspect - target) > ASPECT_TOLERANCE * target:
                raise StageContractError(
                    name,
                    "aspect",
                    f"image input is {_size(image)} (aspect {aspect:.3f}) but the stage renders "
                    f"{stage.width}x{stage.height} (aspect {target:.3f}); it would be stretched",
                )
        elif image.shape[:2] != (stage.height, stage.width):
            raise StageContractError(
                name,
                "size",
                f"image input is {_size(image)}; expected {stage.width}x{stage.height}",
            )
    if mask is not None:
        check_mask_input(stage, mask)


def check_mask_input(stage: StageConfig, mask: np.ndarray) -> None:
    """Check a stage's mask: uint8 of the stage size, only 0 and 255, covering something."""
    name = stage.name
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise StageContractError(
            name, "mode", f"mask is {mask.dtype} {mask.shape}; expected uint8 (height, width)"
        )
    if mask.shape != (stage.height, stage.width):
        raise StageContractError(
            name, "size", f"mask is {_size(mask)}; expected {stage.width}x{stage.height}"
        )
    if not np.isin(mask, (0, 255)).all():
        raise StageContractError(name, "mode", "mask holds values other than 0 and 255")
    if not mask.any():
        raise StageContractError(
            name,
            "mask_coverage",
            f"mask covers nothing at {stage.width}x{stage.height}; nothing would be repainted",
        )


def check_output_size(stage: StageConfig, width: int, height: int) -> None:
    """Check that a stage produced its configured size."""
    if (width, height) != (stage.width, stage.height):
        raise StageContractError(
            stage.name, "size", f"output is {width}x{height}; expected {stage.width}x{stage.height}"
        )


def check_stage_output(stage: StageConfig, image: Any) -> None:
    """Check a stage's output image: an RGB array, no NaN, uint8, the stage size, not blank."""
    name = stage.name
    if not isinstance(image, np.ndarray):
        raise StageContractError(name, "mode", f"output is a {type(image).__name__}, not an array")
    if image.ndim != 3 or image.shape[2] != 3:
        raise StageContractError(
            name, "mode", f"output has shape {image.shape}; expected (height, width, 3) RGB"
        )
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        bad = int(np.count_nonzero(~np.isfinite(image)))
        raise StageContractError(name, "finite", f"output holds {bad} NaN or infinite values")
    if image.dtype != np.uint8:
        raise StageContractError(name, "mode", f"output is {image.dtype}; expected uint8")
    check_output_size(stage, image.shape[1], image.shape[0])
    step = max(1, math.isqrt(image.shape[0] * image.shape[1] // BLANK_SAMPLE_PIXELS))
    spread = float(image[::step, ::step].std())  # a strided sample bounds the float copy
    if spread < BLANK_STD:
        raise StageContractError(
            name,
            "not_blank",
            f"output is blank (one flat colour, pixel std {spread:.2f} < {BLANK_STD})",
        )
