"""Turn a model entry of the config into loaded diffusers pipelines.

Sources: `hf:org/name@revision` (Hugging Face cache or hub, pinned revision;
offline with HF_HUB_OFFLINE=1 when cached), a local directory in
`save_pretrained` layout, `s3://bucket/prefix` (copied once to node-local disk
with boto3), or `tiny[:seed]` (a tiny model of the config's family, built from
configs, saved once to the cache). A local or s3:// source may pin its content
(`@sha256:<hex>`, `serve.pinned_weights`).
txt2img, img2img and inpainting share one set of weights (`from_pipe`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)

from core.config import ModelConfig
from core.errors import ModelLoadError
from core.memory_options import Action, gpu_auto_dtype, memory_actions
from core.model_source import ModelSource, hub_kwargs, parse_source
from serve.lora_loading import load_loras
from serve.pinned_weights import pinned_s3_copy, verified
from serve.tiny_pipeline import tiny_pipeline_dir

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "pndm": PNDMScheduler,
    "lms": LMSDiscreteScheduler,
}
_COMPLETE_MARKER = ".complete"


@dataclass
class LoadedModel:
    """The three pipelines of one model, sharing the same components."""

    txt2img: DiffusionPipeline
    img2img: DiffusionPipeline
    inpaint: DiffusionPipeline
    device: str
    dtype: torch.dtype
    source: ModelSource
    name: str = "model"  # the config's name for it (errors name it)
    memory: tuple[str, ...] = ("to_device",)  # the `memory_actions` applied at load
    loras: tuple[str, ...] = ()  # adapters a render may switch on (`serve.lora_loading`)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # module state
    fused_loras: tuple[str, ...] = ()  # adapters merged into the weights at load

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def describe(self) -> dict[str, Any]:
        """Its pipelines' classes, dtype, where each weighted component sits and the memory
        steps applied at load (`core.schemas.LoadedPipelines`)."""
        pipes = {"txt2img": self.txt2img, "img2img": self.img2img, "inpaint": self.inpaint}
        components = {
            name: str(next(module.parameters()).device)
            for name, module in self.txt2img.components.items()
            if isinstance(module, torch.nn.Module) and any(True for _ in module.parameters())
        }
        return {
            "pipelines": {mode: type(pipe).__name__ for mode, pipe in pipes.items()},
            "dtype": self.dtype_name,
            "device": self.device,
            "components": components,
            "memory": list(self.memory),
            "loras": list(self.loras),
            "fused_loras": list(self.fused_loras),
        }


def pick_device_and_dtype(
    requested: str, family: str = "sd", device: str | None = None, bf16: bool | None = None
) -> tuple[str, torch.dtype]:
    """The device (a GPU when there is one) and dtype: the config's, or for `auto` float32
    on a CPU and the family's half precision on a GPU (`gpu_auto_dtype`); a GPU
    without bfloat16 (`bf16`: before Ampere) runs those families in float32."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if requested != "auto":
        return device, getattr(torch, requested)
    if device == "cpu":
        return device, torch.float32
    dtype = getattr(torch, gpu_auto_dtype(family))
    if dtype == torch.bfloat16 and not (torch.cuda.is_bf16_supported() if bf16 is None else bf16):
        return device, torch.float32
    return device, dtype


def load_model(model: ModelConfig, cache_dir: Path, name: str = "model") -> LoadedModel:
    """Load the config's model entry `name` into txt2img / img2img / inpaint pipelines."""
    source = parse_source(model.source)
    directory, kwargs = _resolve(source, Path(cache_dir).expanduser(), model.family)
    device, dtype = pick_device_and_dtype(model.dtype, model.family)
    actions = memory_actions(model.memory, model.family, device, model.gpus_per_replica)
    if "drop_t5" in actions:
        kwargs.update(text_encoder_3=None, tokenizer_3=None)
    if "device_map_balanced" in actions:  # placed while loading, never moved after
        kwargs["device_map"] = "balanced"
    try:
        txt2img = AutoPipelineForText2Image.from_pretrained(directory, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model from {model.source}: {exc}") from None
    if model.scheduler != "default":
        scheduler_cls = SCHEDULERS[model.scheduler]
        txt2img.scheduler = scheduler_cls.from_config(txt2img.scheduler.config)
    switchable = load_loras(txt2img, model.loras, Path(cache_dir).expanduser(), copy_s3_prefix)
    fused = tuple(adapter.name for adapter in model.loras if adapter.fuse)
    img2img = AutoPipelineForImage2Image.from_pipe(txt2img)
    inpaint = AutoPipelineForInpainting.from_pipe(txt2img)
    pipes = (txt2img, img2img, inpaint)
    for action in actions:
        _apply(action, pipes, device)
    for pipe in pipes:
        pipe.set_progress_bar_config(disable=True)
    return LoadedModel(
        *pipes,
        device,
        dtype,
        source,
        name,
        memory=tuple(actions),
        loras=switchable,
        fused_loras=fused,
    )


def _apply(action: Action, pipes: tuple[DiffusionPipeline, ...], device: str) -> None:
    """Run one of `memory_actions`' steps on the pipelines (they share their components).

    Model offload hooks are set on every pipeline, so each one's call ends by moving the
    shared components back to host memory; sequential offload hooks sit on the modules
    themselves and serve every pipeline. VAE and attention settings live in the shared
    modules, so setting them once covers all three.
    """
    txt2img = pipes[0]
    if action == "to_device":
        txt2img.to(device)
    elif action == "model_cpu_offload":
        for pipe in pipes:
            pipe.enable_model_cpu_offload(device=device)
    elif action == "sequential_cpu_offload":
        txt2img.enable_sequential_cpu_offload(device=device)
    elif action == "vae_tiling":
        txt2img.vae.enable_tiling()
    elif action == "vae_slicing":
        txt2img.vae.enable_slicing()
    elif action == "attention_slicing":
        txt2img.enable_attention_slicing()


def _resolve(source: ModelSource, cache_dir: Path, family: str) -> tuple[str, dict[str, Any]]:
    """Return what to pass to from_pretrained: a directory or repo id, and extra kwargs."""
    if source.kind == "tiny":
        return str(tiny_pipeline_dir(cache_dir, source.seed, family)), {}
    if source.kind == "local":
        path = Path(source.location).expanduser()
        if not (path / "model_index.json").exists():
            raise ModelLoadError(
                f"{path} is not a diffusers pipeline directory (no model_index.json)"
            )
        verified(path, source.revision, f"{source.location}@{source.revision}")
        return str(path), {"local_files_only": True}
    if source.kind == "s3":
        copy = pinned_s3_copy(source.location, source.revision, cache_dir, copy_s3_prefix)
        return str(copy), {"local_files_only": True}
    return source.location, hub_kwargs(source.revision)


def copy_s3_prefix(uri: str, cache_dir: Path, client: Any = None) -> Path:
    """Copy every object under `s3://bucket/prefix` to node disk once; return the directory.

    The copy lands in a private temporary directory and is renamed into place
    only when complete, so a crash mid-copy never leaves a half model behind.
    """
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = cache_dir / "s3" / f"{bucket}-{digest}"
    if (target / _COMPLETE_MARKER).exists():
        return target
    client = client or boto3.client("s3")  # endpoint from AWS_ENDPOINT_URL(_S3) if set
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        keys = [
            obj["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
            )
            for obj in page.get("Contents", [])
        ]
        if not keys:
            raise ModelLoadError(f"no objects under {uri}")
        for key in keys:
            relative = key[len(prefix) :].lstrip("/") if prefix else key
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(destination))
        (staging / _COMPLETE_MARKER).touch()
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / _COMPLETE_MARKER).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
