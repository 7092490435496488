"""A replica's warm-up: one small render before it reports healthy.

A fresh replica's first render pays for lazy work (CUDA kernels chosen and
compiled, allocator pools grown, weights paged in); warming up in the
constructor puts that cost before Serve marks the replica RUNNING, so no user
waits for it. A model that cannot render (a NaN output, a device error) fails
here and never takes traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.config import ModelConfig
from core.schemas import GenerateRequest, GenerateResult

WARMUP_MAX_SIDE = 256  # pixels: small, yet large enough to run every block of the model
WARMUP_MAX_STEPS = 2
WARMUP_PROMPT = "warm-up"
UPSCALER_WARMUP_SIDE = 32  # source pixels of the upscaler's warm-up image


@dataclass(frozen=True)
class Warmup:
    """What a replica rendered before reporting healthy, and how long it took."""

    width: int
    height: int
    steps: int
    seconds: float

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def warmup_request(config: ModelConfig) -> GenerateRequest:
    """The small txt2img render of a diffusion model's warm-up: a square of at most
    WARMUP_MAX_SIDE pixels (a multiple of the model's size step), at most WARMUP_MAX_STEPS
    steps, at the model's default guidance so that guided sampling runs too."""
    side = min(config.native_resolution, WARMUP_MAX_SIDE)
    side = max(config.size_step, side - side % config.size_step)
    return GenerateRequest(
        prompt=WARMUP_PROMPT,
        width=side,
        height=side,
        steps=min(config.default_steps, WARMUP_MAX_STEPS),
        guidance=config.default_guidance,
        seed=0,
    )


def warm_up_renderer(
    render: Callable[[list[GenerateRequest]], list[GenerateResult]], config: ModelConfig
) -> Warmup:
    """Render the warm-up request through `render` (the engine's batch call)."""
    request = warmup_request(config)
    started = time.perf_counter()
    render([request])
    return Warmup(request.width, request.height, request.steps, time.perf_counter() - started)


def warm_up_upscaler(upscale: Callable[[np.ndarray], np.ndarray]) -> Warmup:
    """Upscale a small grey image through `upscale`."""
    side = UPSCALER_WARMUP_SIDE
    started = time.perf_counter()
    upscale(np.full((side, side, 3), 128, np.uint8))
    return Warmup(side, side, 1, time.perf_counter() - started)
