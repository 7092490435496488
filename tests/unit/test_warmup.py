"""A replica's warm-up (issue 15): one small render, its size and steps, and a model that
cannot render failing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import ModelConfig
from core.errors import ModelOutputError
from core.schemas import GenerateRequest
from serve.engine import RenderEngine
from serve.loader import load_model
from serve.upscaler import load_upscaler
from serve.warmup import warm_up_renderer, warm_up_upscaler, warmup_request


@pytest.mark.parametrize(
    ("native", "factor", "steps", "side", "warm_steps"),
    [(1024, 8, 30, 256, 2), (128, 4, 20, 128, 2), (100, 8, 1, 96, 1), (36, 16, 3, 32, 2)],
)
def test_the_warmup_render_is_small_and_fits_the_latent_grid(
    native, factor, steps, side, warm_steps
):
    config = ModelConfig(
        source="tiny:0",
        native_resolution=native,
        latent_factor=factor,
        default_steps=steps,
        default_guidance=6.5,
    )
    request = warmup_request(config)
    assert (request.width, request.height, request.steps) == (side, side, warm_steps)
    assert (request.guidance, request.mode) == (6.5, "txt2img")


def test_a_tiny_model_warms_up_through_its_engine(tmp_path):
    config = ModelConfig(source="tiny:0", native_resolution=64, default_steps=4)
    engine = RenderEngine(load_model(config, tmp_path), max_batch_size=2, fixed_batch_shape=True)
    seen: list[list[GenerateRequest]] = []

    def render(requests):
        seen.append(requests)
        return engine.render(requests)

    warmup = warm_up_renderer(render, config)
    assert [(r.width, r.height, r.steps) for r in seen[0]] == [(64, 64, 2)]
    assert warmup.describe() == {
        "width": 64,
        "height": 64,
        "steps": 2,
        "seconds": warmup.seconds,
    }
    assert warmup.seconds > 0


def test_a_model_that_renders_nan_fails_its_warmup(tmp_path):
    config = ModelConfig(source="tiny:0", native_resolution=64, default_steps=2)
    loaded = load_model(config, tmp_path, "broken")
    loaded.txt2img.vae.decoder.register_forward_hook(lambda module, args, out: out * torch.nan)
    engine = RenderEngine(loaded, max_batch_size=1, fixed_batch_shape=True)
    with pytest.raises(ModelOutputError, match="broken"):
        warm_up_renderer(engine.render, config)


def test_the_upscaler_warms_up_on_a_small_image():
    engine = load_upscaler("realesrgan:animevideov3-x4", 4, threads=1)
    shapes: list[tuple[int, ...]] = []

    def upscale(image: np.ndarray) -> np.ndarray:
        out = engine.upscale(image)
        shapes.append(out.shape)
        return out

    warmup = warm_up_upscaler(upscale)
    assert shapes == [(128, 128, 3)]
    assert (warmup.width, warmup.height, warmup.steps) == (32, 32, 1)
