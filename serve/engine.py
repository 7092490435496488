"""Run batches of `GenerateRequest`s on a loaded model (no Serve, no Ray).

Determinism: every image gets its own `torch.Generator` seeded from its
request, so its starting noise never depends on its neighbours in a batch.
The kernels themselves can differ in the last bits between a batch of 1 and a
larger batch (measured on this CPU: up to 1/255 per pixel), so with
`fixed_batch_shape` every group is padded to `max_batch_size` rows; a request
then returns the same bytes however it happened to be batched.

A request may pick one of the model's allowed schedulers (the call runs on a copy
of the mode's pipeline with that scheduler, sharing every weight) and switch on
LoRA adapters; requests differing in either never share a call.
"""

from __future__ import annotations

import inspect
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.errors import TileOutOfMemory
from core.imaging import unit_floats_to_uint8
from core.schemas import GenerateRequest, GenerateResult
from serve.loader import SCHEDULERS, LoadedModel
from serve.lora_loading import activate

_PAD_SEED = 0


class RenderEngine:
    """Renders batches on one loaded model."""

    def __init__(
        self,
        model: LoadedModel,
        max_batch_size: int,
        fixed_batch_shape: bool,
        identity: Callable[[], tuple[str, list[str]]] = lambda: ("local", []),
        max_pixels_per_call: int | None = None,
    ):
        self.model = model
        self.max_batch_size = max_batch_size
        self.fixed_batch_shape = fixed_batch_shape
        self.max_pixels_per_call = max_pixels_per_call
        self._identity = identity
        self._scheduled: dict[tuple[str, str], Any] = {}  # (mode, scheduler) -> pipeline

    def render(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        """Render every request; results come back in request order."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[request.batch_key()].append(index)
        results: list[GenerateResult | None] = [None] * len(requests)
        for indices in groups.values():
            for start in range(0, len(indices), self.max_batch_size):
                chunk = indices[start : start + self.max_batch_size]
                rendered = self._render_group([requests[i] for i in chunk])
                for index, result in zip(chunk, rendered, strict=True):
                    results[index] = result
        return results  # type: ignore[return-value]

    def _render_group(self, group: list[GenerateRequest]) -> list[GenerateResult]:
        first = group[0]
        size = f"{first.width}x{first.height}"
        if self.max_pixels_per_call and first.width * first.height > self.max_pixels_per_call:
            raise TileOutOfMemory(
                size, f"over the replica's limit of {self.max_pixels_per_call} pixels per call"
            )
        padded = list(group)
        if self.fixed_batch_shape and self.max_batch_size > 1:
            filler = _padding_request(group[0])
            padded += [filler] * (self.max_batch_size - len(group))
        started_at = time.time()
        started = time.perf_counter()
        try:
            images = self._run(padded)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise TileOutOfMemory(size, str(exc)) from None
        elapsed = time.perf_counter() - started
        replica, gpu_ids = self._identity()
        return [
            GenerateResult(
                image=images[i],
                seed=request.seed,
                compute_s=elapsed,
                batch_size=len(group),
                replica=replica,
                gpu_ids=gpu_ids,
                started_at=started_at,
            )
            for i, request in enumerate(group)
        ]

    def _run(self, batch: list[GenerateRequest]) -> np.ndarray:
        first = batch[0]
        device = self.model.device
        kwargs = {
            "prompt": [r.prompt for r in batch],
            "negative_prompt": [r.negative_prompt for r in batch],
            "num_inference_steps": first.steps,
            "guidance_scale": first.guidance,
            "generator": [torch.Generator(device).manual_seed(r.seed) for r in batch],
            "output_type": "np",
        }
        pipe = self._pipeline(first.mode, first.scheduler)
        if first.mode == "txt2img":
            kwargs.update(width=first.width, height=first.height)
        elif first.mode == "img2img":
            kwargs.update(image=[_pil(r.init_image) for r in batch], strength=first.strength)
            if _takes_size(pipe):  # SD3 and Flux otherwise render their default size
                kwargs.update(width=first.width, height=first.height)
        else:
            kwargs.update(
                image=[_pil(r.init_image) for r in batch],
                mask_image=[_pil(r.mask) for r in batch],
                width=first.width,
                height=first.height,
                strength=first.strength,
            )
        with self.model.lock, torch.inference_mode():
            if self.model.loras:
                activate(self.model.txt2img, first.loras)  # the modules all modes share
            output = pipe(**kwargs).images
        return unit_floats_to_uint8(np.asarray(output), self.model.name, self.model.dtype_name)

    def _pipeline(self, mode: str, scheduler: str | None) -> Any:
        """The mode's pipeline, or a copy of it sampling with `scheduler` (made once)."""
        pipe = getattr(self.model, mode)
        if scheduler is None:
            return pipe
        key = (mode, scheduler)
        if key not in self._scheduled:
            chosen = SCHEDULERS[scheduler].from_config(pipe.scheduler.config)
            copy = type(pipe).from_pipe(pipe, scheduler=chosen)
            copy.set_progress_bar_config(disable=True)
            self._scheduled[key] = copy
        return self._scheduled[key]


def _padding_request(template: GenerateRequest) -> GenerateRequest:
    """A filler row with the same batch key, whose output is discarded."""
    return GenerateRequest(
        prompt="",
        width=template.width,
        height=template.height,
        steps=template.steps,
        guidance=template.guidance,
        seed=_PAD_SEED,
        mode=template.mode,
        strength=template.strength,
        init_image=template.init_image,
        mask=template.mask,
        scheduler=template.scheduler,
        loras=template.loras,
    )


def _takes_size(pipe: Any) -> bool:
    """Whether the pipeline's call takes `width` and `height` (SD's img2img does not)."""
    return "width" in inspect.signature(pipe.__call__).parameters


def _pil(array: np.ndarray | None) -> Image.Image:
    if array is None:
        raise ValueError("this mode needs init_image (and mask for inpaint)")
    return Image.fromarray(array)
