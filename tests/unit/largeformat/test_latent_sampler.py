"""The router's sampler: noise as diffusers draws it, bands that step to the whole canvas's
values, img2img's shortened schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import PNDMScheduler
from diffusers.utils.torch_utils import randn_tensor

from core.largeformat.fused_schemas import SchedulerSpec
from core.largeformat.latent_sampler import LatentSampler, fuses_exactly
from serve.loader import SCHEDULERS

BASE = PNDMScheduler(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    skip_prk_steps=True,
    set_alpha_to_one=False,
    steps_offset=1,
).config
BANDS = [(0, 7), (7, 19), (19, 30)]


def _spec(name: str) -> SchedulerSpec:
    cls = SCHEDULERS[name]
    return SchedulerSpec(cls.__name__, dict(cls.from_config(BASE).config))


def test_the_starting_noise_is_diffusers_draw_of_the_whole_canvas():
    sampler = LatentSampler(_spec("pndm"), 4, 11)
    latents = sampler.start((1, 4, 30, 20))
    expected = randn_tensor((1, 4, 30, 20), generator=torch.Generator().manual_seed(11))
    assert torch.equal(latents, expected * sampler.scheduler.init_noise_sigma)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_bands_step_to_the_values_of_the_whole_canvas(name):
    whole = LatentSampler(_spec(name), 4, 3)
    latents = whole.start((1, 4, 30, 20))
    bands = [
        (whole.band(i, len(BANDS)), latents[:, :, a:b].contiguous())
        for i, (a, b) in enumerate(BANDS)
    ]
    rng = np.random.default_rng(0)
    for t in whole.timesteps:
        model_input = whole.model_input(latents, t)
        prediction = rng.standard_normal((4, 30, 20)).astype(np.float32)
        latents = whole.step(prediction, t, latents)
        stepped = []
        for (sampler, part), (a, b) in zip(bands, BANDS, strict=True):
            if name != "euler_a":  # ancestral steps draw a band's noise of its own
                assert np.array_equal(sampler.model_input(part, t), model_input[:, a:b])
            stepped.append(
                (sampler, sampler.step(np.ascontiguousarray(prediction[:, a:b]), t, part))
            )
        bands = stepped
    joined = torch.cat([part for _, part in bands], dim=2)
    assert torch.equal(joined, latents) == (name != "euler_a")
    assert fuses_exactly(_spec(name))[0] == (name not in ("euler_a", "ddim"))  # ddim: clip_sample


def test_a_canvas_of_one_band_keeps_the_jobs_generator():
    sampler = LatentSampler(_spec("euler_a"), 4, 3)
    assert sampler.band(0, 1) is sampler
    other = sampler.band(1, 2)
    assert other.scheduler is not sampler.scheduler and other.generator is not sampler.generator


def test_img2img_starts_down_the_schedule_at_the_strength():
    full = LatentSampler(_spec("euler"), 10, 3)
    half = LatentSampler(_spec("euler"), 10, 3, strength=0.5)
    assert torch.equal(half.timesteps, full.timesteps[5:])
    init = np.zeros((4, 8, 8), np.float32)
    start = half.start((1, 4, 8, 8), init)
    noise = randn_tensor((1, 4, 8, 8), generator=torch.Generator().manual_seed(3))
    expected = half.scheduler.add_noise(torch.zeros((1, 4, 8, 8)), noise, half.timesteps[:1])
    assert torch.equal(start, expected)
    with pytest.raises(ValueError, match="not a diffusers scheduler"):
        LatentSampler(SchedulerSpec("UNet2DModel", {}), 4, 0)
