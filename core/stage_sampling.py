"""A pipeline stage's scheduler and LoRA adapters, chosen as a single render's are.

A stage may name a scheduler from its model's `schedulers` and adapters from its
model's `loras` allow-list; a stage that names a style and no adapters gets the
style's `style_loras`, as a render of that style does. The config checks every
stage when it loads (`stage_sampling_problems`); a run checks its stages again,
overrides of a re-run included (`stage_sampling`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.lora_options import ChosenLoras, LoraChoice
from core.pipelines import PipelineConfig, StageConfig
from core.sampling_options import SamplingChoiceError, SamplingModel, chosen_sampling

__all__ = ["stage_sampling", "stage_sampling_problems"]


def stage_sampling(
    stage: StageConfig, model: SamplingModel, style_loras: Mapping[str, Sequence[LoraChoice]]
) -> tuple[str | None, ChosenLoras]:
    """The scheduler (None: the model's own) and the (adapter, scale) pairs `stage` renders
    with; `SamplingChoiceError` naming the field when its model does not allow them."""
    choices = stage.loras
    if choices is None and stage.style is not None:
        choices = style_loras.get(stage.style)
    return chosen_sampling(stage.scheduler, choices, model)


def stage_sampling_problems(
    name: str,
    pipeline: PipelineConfig,
    models: Mapping[str, SamplingModel],
    styles: Mapping[str, str],
    style_loras: Mapping[str, Sequence[LoraChoice]],
) -> list[str]:
    """What is wrong with the schedulers and adapters `pipeline`'s stages choose (stages
    naming an unknown model or style are left to `check_pipeline_references`)."""
    problems = []
    for stage in pipeline.stages:
        model_name = stage.model if stage.model is not None else styles.get(str(stage.style))
        if model_name is None or model_name not in models:
            continue
        try:
            stage_sampling(stage, models[model_name], style_loras)
        except SamplingChoiceError as exc:
            problems.append(f"pipeline {name!r} stage {stage.name!r}: {exc}")
    return problems
