"""Load a model's LoRA adapters into its pipelines once, and switch them per render.

Fused adapters are loaded, merged into the weights at their scales and unloaded
(the merged weights stay); the others stay loaded as named adapters, off until a
render switches them on (`activate`). txt2img, img2img and inpaint share their
modules, so loading into one pipeline serves all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from diffusers import DiffusionPipeline

from core.errors import ModelLoadError
from core.lora_options import ChosenLoras, LoraAdapter
from core.model_source import hub_kwargs, parse_source
from serve.pinned_weights import pinned_s3_copy, verified

__all__ = ["activate", "load_loras"]

CopyS3 = Callable[[str, Path], Path]  # copies an s3:// prefix to node disk once


def load_loras(
    pipe: DiffusionPipeline,
    adapters: Sequence[LoraAdapter],
    cache_dir: Path,
    copy_s3: CopyS3,
) -> tuple[str, ...]:
    """Load `adapters` into `pipe` (fused ones merged); the names a render may switch on.
    `copy_s3(uri, cache_dir)` copies an s3:// prefix to node disk."""
    fused = [adapter for adapter in adapters if adapter.fuse]
    switchable = [adapter for adapter in adapters if not adapter.fuse]
    for adapter in fused:
        _load(pipe, adapter, cache_dir, copy_s3)
    if fused:
        names = [adapter.name for adapter in fused]
        pipe.set_adapters(names, [adapter.scale for adapter in fused])
        pipe.fuse_lora(adapter_names=names)
        pipe.unload_lora_weights()  # the merged weights stay; the adapters go
    for adapter in switchable:
        _load(pipe, adapter, cache_dir, copy_s3)
    if switchable:
        pipe.disable_lora()
    return tuple(adapter.name for adapter in switchable)


def activate(pipe: DiffusionPipeline, chosen: ChosenLoras) -> None:
    """Switch on exactly the `chosen` adapters at their scales (none: all off)."""
    if not chosen:
        pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters([name for name, _ in chosen], [scale for _, scale in chosen])


def _load(pipe: DiffusionPipeline, adapter: LoraAdapter, cache_dir: Path, copy_s3: CopyS3) -> None:
    where, kwargs = _location(adapter.source, cache_dir, copy_s3)
    try:
        pipe.load_lora_weights(where, adapter_name=adapter.name, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"cannot load LoRA {adapter.name!r} from {adapter.source}: {exc}"
        ) from None


def _location(source: str, cache_dir: Path, copy_s3: CopyS3) -> tuple[str, dict[str, Any]]:
    """What `load_lora_weights` takes for a source: a directory or repo id, and kwargs."""
    parsed = parse_source(source)
    if parsed.kind == "hf":
        return parsed.location, hub_kwargs(parsed.revision)
    if parsed.kind == "s3":
        return str(pinned_s3_copy(parsed.location, parsed.revision, cache_dir, copy_s3)), {}
    if parsed.kind != "local":
        raise ModelLoadError(f"LoRA source {source!r} is not a file, directory, hf: or s3://")
    path = verified(Path(parsed.location).expanduser(), parsed.revision, source)
    if path.is_file():
        return str(path.parent), {"weight_name": path.name}
    if not path.is_dir():
        raise ModelLoadError(f"LoRA source {source!r} does not exist")
    return str(path), {}
