"""What a pipeline run carries between its stages: requests, stage jobs and outputs, run state.

`PipelineRequest` is what a run is asked for; `StageJob` / `StageOutput` are the
contract of the injected `render_stage` callable (a fake in tests,
`actors.stage_renderers.ServeStageRenderer` on a cluster); `PipelineRunState` is
the state of a run, typed, as its record's params hold it. No Ray.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from core.config import ClusterConfig, ModelConfig
from core.errors import RenderClusterError, RequestError, StorageError
from core.pipelines import PipelineConfig, StageConfig, StageContractError
from core.records import RunRecord, RunRegistry
from core.schemas import GenerateRequest, LargeRenderJob
from core.stage_sampling import stage_sampling
from core.typography.results import TypographyReport
from core.typography.schema import TextBox
from core.validation import DEFAULT_IMG2IMG_STRENGTH

__all__ = [
    "CACHE_PREFIX",
    "GateFailed",
    "PipelineRequest",
    "PipelineRunState",
    "RenderStage",
    "StageImage",
    "StageJob",
    "StageOutput",
    "decode_png",
    "failure_reason",
    "save_quietly",
    "sha256_hex",
    "stage_model",
    "stage_params",
]

logger = logging.getLogger(__name__)
CACHE_PREFIX = "stage-cache"


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
    provider: dict[str, Any] | None = None  # a hosted model's call (core.remote.record)
    extra_providers: list[dict[str, Any]] = field(default_factory=list)  # its further calls


RenderStage = Callable[[StageJob], Awaitable[StageOutput]]


@dataclass
class StageImage:
    """A finished stage's image on its way to the next stage (bytes read when needed)."""

    key: str
    sha256: str | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)


class PipelineRunState(BaseModel):
    """The state of a pipeline run, typed: its record's `params` (the fields are the JSON keys).

    Read it with `from_record`, move it on with the methods below (each returns a
    new state) and write it back with `to_params`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: list[StageConfig] = Field(
        min_length=1, description="The stages the run runs: a snapshot, overrides applied."
    )
    next_stage: int = Field(0, ge=0, description="Index of the next stage to run.")
    stage_runs: dict[str, str] = Field(
        default_factory=dict, description="Stage name -> id of that stage's record."
    )
    approved: list[str] = Field(
        default_factory=list,
        description="Approval gates passed (a re-run inherits its original's).",
    )
    rerun_from: str | None = Field(
        None, description="A re-run: the stage it recomputes from, cache or not."
    )
    overrides: dict[str, JsonValue] = Field(
        default_factory=dict, description="A re-run: what it changed in `rerun_from`."
    )
    input_keys: dict[str, str] = Field(
        default_factory=dict, description="Upload (reference, mask) -> its store key."
    )
    text_boxes: list[TextBox] = Field(
        default_factory=list, description="Copy set on the last stage's output."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PipelineRunState:
        pipeline = PipelineConfig(stages=self.stages)  # the stages' order and references
        if self.next_stage > len(self.stages):
            raise ValueError(f"next_stage {self.next_stage} is past {len(self.stages)} stages")
        if self.rerun_from is not None:
            try:
                pipeline.index(self.rerun_from)
            except KeyError as exc:
                raise ValueError(f"rerun_from: {exc.args[0]}") from None
        return self

    @classmethod
    def from_record(cls, run: RunRecord) -> PipelineRunState:
        """The state `run`'s params hold."""
        return cls.model_validate(run.params)

    def to_params(self) -> dict[str, JsonValue]:
        """The state as a run record's params."""
        return self.model_dump(mode="json")

    @property
    def pipeline(self) -> PipelineConfig:
        """The stages as a pipeline (validated with this state)."""
        return PipelineConfig.model_construct(stages=self.stages)

    @property
    def force_from(self) -> int | None:
        """A re-run recomputes the stages from this index on, cache or not."""
        return None if self.rerun_from is None else self.pipeline.index(self.rerun_from)

    @property
    def final_size(self) -> tuple[int, int]:
        """(width, height) of the last stage: where text is typeset."""
        last = self.stages[-1]
        return last.width, last.height

    @property
    def previous_stage(self) -> StageConfig:
        """The stage before `next_stage` (the one a run awaiting approval waits on)."""
        return self.stages[self.next_stage - 1]

    def with_stage_run(self, stage: str, run_id: str) -> PipelineRunState:
        """The state with `run_id` recorded as `stage`'s record."""
        return self.model_copy(update={"stage_runs": {**self.stage_runs, stage: run_id}})

    def after_stage(self, index: int, run_id: str) -> PipelineRunState:
        """The state once stage `index` is done (its record `run_id`)."""
        state = self.with_stage_run(self.stages[index].name, run_id)
        return state.model_copy(update={"next_stage": index + 1})

    def approving(self, gate: str) -> PipelineRunState:
        """The state with approval gate `gate` passed."""
        approved = [*(name for name in self.approved if name != gate), gate]
        return self.model_copy(update={"approved": approved})


class GateFailed(Exception):
    """A stage's text failed the typography gate; its output is stored for review."""

    def __init__(self, output_key: str, report: TypographyReport):
        super().__init__(report.message())
        self.output_key = output_key
        self.report = report


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def decode_png(data: bytes) -> np.ndarray:
    """RGB pixels of encoded image bytes."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def failure_reason(stage: StageConfig, exc: BaseException) -> str:
    """One line saying why a stage failed, naming the stage."""
    if isinstance(exc, StageContractError):
        return str(exc)
    if isinstance(exc, RenderClusterError):
        return f"stage {stage.name!r}: {exc}"
    return f"stage {stage.name!r}: {type(exc).__name__}: {exc}"


def stage_model(config: ClusterConfig, stage: StageConfig) -> tuple[str, ModelConfig]:
    """The model that renders `stage` (by name or style); `RequestError` if it is not configured."""
    name = stage.model if stage.model is not None else config.styles.get(str(stage.style))
    if name is None or name not in config.models:
        what = f"model {stage.model!r}" if stage.model is not None else f"style {stage.style!r}"
        raise RequestError(f"stages.{stage.name}", f"{what} is not in the cluster config")
    return name, config.models[name]


def stage_params(config: ClusterConfig, stage: StageConfig, model: ModelConfig) -> dict[str, Any]:
    """Every parameter the stage renders with, defaults resolved (the cache key's)."""
    scheduler, loras = stage_sampling(stage, model, config.style_loras)
    params: dict[str, Any] = {
        "kind": stage.kind,
        "width": stage.width,
        "height": stage.height,
        "steps": stage.steps if stage.steps is not None else model.default_steps,
        "guidance": stage.guidance if stage.guidance is not None else model.default_guidance,
        "scheduler": scheduler or model.scheduler,
        "dtype": model.dtype,
        "family": model.family,
    }
    if loras:  # only when chosen, so the cache keys of stages without adapters stay as they were
        params["loras"] = [{"name": name, "scale": scale} for name, scale in loras]
    if stage.kind == "hires":
        strength = stage.strength
        if strength is None:
            strength = model.hires.strength(config.tiling.refine_strength)
        params.update(
            mode="hires",
            strength=strength,
            tile_size=model.native_resolution,
            align=model.size_step,
            format="png",
            hires_upscaler=stage.hires_upscaler or model.hires.upscaler,
        )
    elif stage.image_input is not None:
        params.update(
            mode="inpaint" if "mask" in stage.consumes else "img2img",
            strength=stage.strength if stage.strength is not None else DEFAULT_IMG2IMG_STRENGTH,
        )
    else:
        params["mode"] = "txt2img"
    return params


def save_quietly(registry: RunRegistry, record: RunRecord) -> None:
    """Save a failure record if the store still works (the caller raises anyway)."""
    try:
        registry.save(record)
    except StorageError as exc:
        logger.warning("could not record run %s as failed: %s", record.id, exc)
