"""A run record as the metadata its image carries (`core.image_metadata.ImageMetadata`).

`record_metadata` gives the run id, the record's settings as JSON, and a
`parameters` text in the format AUTOMATIC1111's tools read ("<prompt>\\nNegative
prompt: <neg>\\nSteps: N, Sampler: ..., CFG scale: G, Seed: S, Size: WxH, Model:
name, ...").
"""

from __future__ import annotations

import json
from typing import Any

from core.image_metadata import ImageMetadata
from core.records import RunRecord

__all__ = ["SAMPLER_NAMES", "a1111_parameters", "record_metadata"]

SAMPLER_NAMES = {
    "default": "Default",
    "ddim": "DDIM",
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpm++": "DPM++ 2M",
    "pndm": "PLMS",
    "lms": "LMS",
}
"""The config's scheduler names as AUTOMATIC1111 names its samplers."""


def record_metadata(record: RunRecord, scheduler: str | None = None) -> ImageMetadata:
    """The metadata of an image `record` produced (`scheduler`: the model's, if known)."""
    settings = {
        "run_id": record.id,
        "kind": record.kind,
        "model": record.model,
        "model_source": record.model_source,
        "model_revision": record.model_revision,
        "style": record.style,
        "prompt": record.prompt,
        "negative_prompt": record.negative_prompt,
        "seed": record.seed,
        "params": record.params,
    }
    return ImageMetadata(
        run_id=record.id,
        parameters=a1111_parameters(record, scheduler),
        settings=json.dumps(settings, sort_keys=True),
    )


def a1111_parameters(record: RunRecord, scheduler: str | None = None) -> str:
    """The `parameters` text AUTOMATIC1111's PNG Info and its readers parse."""
    params = record.params
    fields: dict[str, Any] = {
        "Steps": params.get("steps"),
        "Sampler": SAMPLER_NAMES.get(scheduler or "default", scheduler),
        "CFG scale": params.get("guidance"),
        "Seed": record.seed,
        "Size": f"{params.get('width')}x{params.get('height')}",
        "Model": record.model,
        "Model revision": record.model_revision,
    }
    if params.get("mode") in ("img2img", "inpaint", "hires", "fused") and "strength" in params:
        fields["Denoising strength"] = params["strength"]
    fields["Mode"] = params.get("mode")
    fields["Run id"] = record.id
    settings = ", ".join(
        f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None
    )
    lines = [record.prompt]
    if record.negative_prompt:
        lines.append(f"Negative prompt: {record.negative_prompt}")
    lines.append(settings)
    return "\n".join(lines)


def _quote(value: Any) -> str:
    """A value as A1111 writes it: JSON-quoted when it holds a separator."""
    text = str(value)
    if any(mark in text for mark in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text
