"""Parse the `source` of a model entry into its kind and parts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from core.weights_digest import split_pin


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights come from."""

    kind: Literal["tiny", "hf", "local", "s3", "realesrgan", "remote"]
    location: str
    revision: str | None = None
    seed: int = 0


def hub_kwargs(revision: str | None) -> dict[str, Any]:
    """What a Hugging Face `from_pretrained` / `load_lora_weights` call takes for a pinned
    revision: offline when HF_HUB_OFFLINE is set, the cache HF_HUB_CACHE names. Read at
    call time (huggingface_hub reads them once, at import)."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    kwargs: dict[str, Any] = {"revision": revision, "local_files_only": offline}
    if os.environ.get("HF_HUB_CACHE"):
        kwargs["cache_dir"] = os.environ["HF_HUB_CACHE"]
    return kwargs


def parse_source(source: str) -> ModelSource:
    """Split a validated source string (see `ModelConfig.source`)."""
    if source == "tiny" or source.startswith("tiny:"):
        seed = int(source.partition(":")[2] or 0)
        return ModelSource("tiny", source, revision=f"tiny-seed{seed}", seed=seed)
    if source.startswith("hf:"):
        repo, _, revision = source[3:].partition("@")
        return ModelSource("hf", repo, revision=revision)
    if source.startswith("remote:"):  # a hosted model: the provider's model id pins it
        location = source.removeprefix("remote:")
        return ModelSource("remote", location, revision=location.partition("/")[2])
    if source.startswith("realesrgan:"):
        return ModelSource("realesrgan", source.removeprefix("realesrgan:"))
    location, pin = split_pin(source)  # local and s3:// sources may pin their content
    if source.startswith("s3://"):
        return ModelSource("s3", location, revision=pin)
    return ModelSource("local", location, revision=pin)
