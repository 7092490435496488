"""What a pipeline run carries between its stages: requests, stage jobs and outputs, the plan.

`PipelineRequest` is what a run is asked for; `StageJob` / `StageOutput` are the
contract of the injected `render_stage` callable (a fake in tests,
`actors.stage_renderers.ServeStageRenderer` on a cluster); `RunPlan` is the state
of a run as its record holds it. No Ray.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from core.config import ClusterConfig, ModelConfig
from core.errors import RenderClusterError, RequestError, StorageError
from core.pipelines import PipelineConfig, StageConfig, StageContractError
from core.records import RunRecord, RunRegistry
from core.schemas import GenerateRequest, LargeRenderJob
from core.typography.results import TypographyReport
from core.typography.schema import TextBox

__all__ = [
    "CACHE_PREFIX",
    "GateFailed",
    "PipelineRequest",
    "RenderStage",
    "RunPlan",
    "StageImage",
    "StageJob",
    "StageOutput",
    "decode_png",
    "failure_reason",
    "save_quietly",
    "sha256_hex",
    "stage_model",
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


RenderStage = Callable[[StageJob], Awaitable[StageOutput]]


@dataclass
class StageImage:
    """A finished stage's image on its way to the next stage (bytes read when needed)."""

    key: str
    sha256: str | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)


@dataclass
class RunPlan:
    """The state of a pipeline run, as its record holds it."""

    pipeline: PipelineConfig
    next_stage: int
    force_from: int | None  # a re-run recomputes stages from here, cache or not
    input_keys: dict[str, str]
    approved: list[str]  # gates passed (a re-run inherits its original's)
    text_boxes: list[TextBox]

    @classmethod
    def of(cls, run: RunRecord) -> RunPlan:
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


def save_quietly(registry: RunRegistry, record: RunRecord) -> None:
    """Save a failure record if the store still works (the caller raises anyway)."""
    try:
        registry.save(record)
    except StorageError as exc:
        logger.warning("could not record run %s as failed: %s", record.id, exc)
