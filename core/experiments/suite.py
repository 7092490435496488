"""A suite file: fixed cases (prompt, seeds, size, mode, mask, text boxes, pipeline) and the
metrics to judge them by. Loaded from YAML; a bad file is one line naming the field."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from core.errors import ConfigError

__all__ = ["METRIC_NAMES", "Case", "Suite", "SuiteError", "load_suite"]

MetricName = Literal[
    "adherence",
    "hires_kept",
    "gate_pass_rate",
    "seam_score",
    "layout_variance",
    "latency_s",
    "cost_per_image",
]
METRIC_NAMES: tuple[str, ...] = MetricName.__args__  # type: ignore[attr-defined]


class SuiteError(ConfigError):
    """A suite file that cannot be used: one line, the field and what is wrong."""

    def __init__(self, source: str, problem: str):
        super().__init__(source, [problem])

    def __str__(self) -> str:
        return f"suite {self.source}: {self.problems[0]}"


class AdherenceSettings(BaseModel):
    """Which scorer judges prompt adherence (`core.experiments.scorers`)."""

    model_config = ConfigDict(extra="forbid")

    scorer: str = Field("scenes", min_length=1, description="Registered scorer name.")
    options: dict[str, JsonValue] = Field(
        default_factory=dict, description="Passed to the scorer's factory (a CLIP model id, ...)."
    )


class Case(BaseModel):
    """One fixed render, made once per seed and per model."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Unique case name.")
    prompt: str = Field(min_length=1, description="What to draw.")
    seed: int = Field(0, ge=0, description="First seed; the case uses seed, seed+1, ...")
    seeds: int | None = Field(None, ge=1, le=64, description="Seeds (default: the suite's).")
    width: int | None = Field(None, ge=8, description="Width (default: the model's native).")
    height: int | None = Field(None, ge=8, description="Height (default: the model's native).")
    mode: Literal["auto", "single", "hires", "tiled", "fused"] = Field(
        "auto", description="Render mode, as in POST /v1/renders."
    )
    steps: int | None = Field(None, ge=1, description="Denoising steps (default: the model's).")
    strength: float | None = Field(None, gt=0, le=1, description="img2img / refine strength.")
    init_image: Path | None = Field(
        None, description="Image to start from (relative: the suite's)."
    )
    mask: Path | None = Field(None, description="Mask, white = repaint; needs init_image.")
    text_boxes: list[dict[str, JsonValue]] = Field(
        default_factory=list, description="Text boxes, as in POST /v1/renders (gated)."
    )
    pipeline: str | None = Field(
        None, description="Run this configured pipeline instead of one render (model per stage)."
    )

    @model_validator(mode="after")
    def _mask_needs_image(self) -> Case:
        if self.mask is not None and self.init_image is None:
            raise ValueError("mask needs init_image")
        if self.pipeline is not None and (self.init_image or self.width or self.text_boxes):
            raise ValueError("a pipeline case takes its sizes and text from the pipeline")
        return self


class Suite(BaseModel):
    """A named list of cases, how many seeds each, and the metrics to report."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Suite name.")
    description: str = Field("", description="What the suite measures.")
    seeds: int = Field(2, ge=1, le=64, description="Seeds per case (a case may override).")
    metrics: list[MetricName] = Field(
        default_factory=lambda: list(METRIC_NAMES), min_length=1, description="What to report."
    )
    adherence: AdherenceSettings = Field(default_factory=AdherenceSettings)
    cases: list[Case] = Field(min_length=1, description="The fixed renders.")

    @model_validator(mode="after")
    def _unique_ids(self) -> Suite:
        ids = [case.id for case in self.cases]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"case ids repeat: {', '.join(repeated)}")
        return self

    def seeds_of(self, case: Case) -> list[int]:
        return [case.seed + i for i in range(case.seeds or self.seeds)]


def load_suite(path: Path) -> tuple[Suite, str]:
    """The suite in `path` (input paths made absolute) and the sha256 of the file and its
    inputs. Any problem raises `SuiteError`: one line naming the field."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SuiteError(str(path), f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SuiteError(str(path), "a suite is a mapping (name, cases, ...)")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "suite"
        raise SuiteError(str(path), f"{where}: {error['msg']}") from None
    digest = hashlib.sha256(text.encode())
    cases = []
    for case in suite.cases:
        case = _resolved(case, path)
        for name in ("init_image", "mask"):
            if getattr(case, name) is not None:
                digest.update(getattr(case, name).read_bytes())
        cases.append(case)
    return suite.model_copy(update={"cases": cases}), digest.hexdigest()


def _resolved(case: Case, suite_path: Path) -> Case:
    """Input paths made absolute (relative ones are the suite file's); missing ones refused."""
    update = {}
    for name in ("init_image", "mask"):
        value = getattr(case, name)
        if value is None:
            continue
        path = value if value.is_absolute() else suite_path.parent / value
        if not path.is_file():
            raise SuiteError(str(suite_path), f"cases.{case.id}.{name}: no file {path}")
        update[name] = path
    return case.model_copy(update=update)
