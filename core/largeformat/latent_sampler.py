"""The router's side of a fused render's denoising loop: noise, timesteps, scheduler steps.

The router holds the whole latent canvas and runs the model's own diffusers
scheduler on it, on the CPU, in float32: one `scale_model_input` before each round of
denoiser calls and one `step` after the tiles' predictions are fused. The initial
noise is drawn once for the whole canvas from the job seed exactly as diffusers'
pipelines draw it (`randn_tensor` on the full latent shape, CPU generator), so the
noise under a tile does not depend on how the canvas is tiled nor on how many
replicas serve it; the same generator then feeds stochastic steps.

Which steps fuse exactly (`fuses_exactly`): MultiDiffusion steps every window on its
own and averages the stepped latents; a fused render averages the windows' noise
predictions and steps once. Both are equal when the step is affine in (sample,
noise prediction) with coefficients that do not depend on the data: then the
average of the steps is the step of the averages (up to float rounding). That holds
for PNDM/PLMS, DDIM with eta 0, Euler with s_churn 0, LMS and DPM-Solver(++) 2M
(the ODE variants), without clipping or thresholding. Ancestral, SDE and
eta > 0 steps add fresh noise (MultiDiffusion averages independent draws per window,
which shrinks the noise in the overlaps); clipping and thresholding are not linear.
For those the fused render still takes one step of the fused prediction with noise
drawn once for the whole canvas (Mixture of Diffusers' formulation): well defined and
the same bytes on any number of replicas, but not MultiDiffusion's bytes.
"""

from __future__ import annotations

import copy
import hashlib
import inspect

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from core.largeformat.fused_schemas import SchedulerSpec

__all__ = ["LatentSampler", "fuses_exactly"]

_LINEAR = {
    "PNDMScheduler": (),
    "DDIMScheduler": ("clip_sample", "thresholding"),
    "EulerDiscreteScheduler": (),
    "LMSDiscreteScheduler": (),
    "DPMSolverMultistepScheduler": ("thresholding",),
}
_ODE_DPM = ("dpmsolver++", "dpmsolver")


def fuses_exactly(spec: SchedulerSpec) -> tuple[bool, str]:
    """Whether fusing predictions then stepping once equals MultiDiffusion; and why."""
    name, config = spec.class_name, spec.config
    if name not in _LINEAR:
        return False, f"{name} is not affine in (sample, prediction) or adds fresh noise"
    flags = [flag for flag in _LINEAR[name] if config.get(flag)]
    if flags:
        return False, f"{name} with {', '.join(flags)} is not affine"
    if name == "DPMSolverMultistepScheduler" and config.get("algorithm_type") not in _ODE_DPM:
        return False, f"{name} {config.get('algorithm_type')} adds fresh noise at every step"
    return True, f"{name}: each step is affine in (sample, prediction), eta 0, s_churn 0"


class LatentSampler:
    """A scheduler run on the whole latent canvas, seeded from the job."""

    def __init__(self, spec: SchedulerSpec, steps: int, seed: int, strength: float | None = None):
        """`strength` (img2img) starts part way down the schedule, as diffusers' img2img."""
        cls = getattr(diffusers, spec.class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
            raise ValueError(f"{spec.class_name!r} is not a diffusers scheduler")
        self.scheduler = cls.from_config(spec.config)
        self.scheduler.set_timesteps(steps, device="cpu")
        self.seed = seed
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.timesteps = self.scheduler.timesteps
        if strength is not None:
            order = self.scheduler.order
            start = steps - min(int(steps * strength), steps)
            self.timesteps = self.timesteps[start * order :]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index(start * order)
        parameters = inspect.signature(self.scheduler.step).parameters
        self._step_kwargs = {}
        if "eta" in parameters:
            self._step_kwargs["eta"] = 0.0
        if "generator" in parameters:
            self._step_kwargs["generator"] = self.generator

    def band(self, index: int, bands: int) -> LatentSampler:
        """This sampler for band `index` of `bands` of the canvas: a scheduler state of its
        own, so that bands step independently (as the panorama pipeline keeps one state per
        view). Every step is elementwise with coefficients shared by all pixels, so a band
        steps to the very values the whole canvas would. A stochastic step draws from a
        generator of the band's own, derived from the job seed (the job's generator itself
        when the canvas is one band), so draws never depend on the order bands step in."""
        if bands == 1:
            return self
        other = copy.copy(self)
        other.scheduler = copy.deepcopy(self.scheduler)
        digest = hashlib.blake2b(f"{self.seed}:band:{index}".encode(), digest_size=8).digest()
        other.generator = torch.Generator("cpu").manual_seed(int.from_bytes(digest, "big") >> 1)
        other._step_kwargs = dict(self._step_kwargs)
        if "generator" in other._step_kwargs:
            other._step_kwargs["generator"] = other.generator
        return other

    def noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normal noise of the whole canvas, drawn as diffusers' pipelines draw it."""
        return randn_tensor(shape, generator=self.generator, device="cpu", dtype=torch.float32)

    def start(self, shape: tuple[int, ...], init_latents: np.ndarray | None = None) -> torch.Tensor:
        """The starting latents (1, C, H, W): scaled noise, or `init_latents` noised (img2img)."""
        noise = self.noise(shape)
        if init_latents is None:
            return noise * self.scheduler.init_noise_sigma
        init = torch.from_numpy(np.ascontiguousarray(init_latents, np.float32)).reshape(shape)
        return self.scheduler.add_noise(init, noise, self.timesteps[:1])

    def model_input(
        self, latents: torch.Tensor, t: torch.Tensor, dtype: np.dtype | str = "float32"
    ) -> np.ndarray:
        """The denoiser's input at `t` for the (band of the) canvas, (C, H, W) in `dtype`
        (converted by torch: numpy's float16 conversion is several times slower)."""
        scaled = self.scheduler.scale_model_input(latents, t)[0]
        return scaled.to(getattr(torch, np.dtype(dtype).name)).numpy()

    def step(self, prediction: np.ndarray, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """One scheduler step of the (band of the) canvas with its fused (C, H, W) prediction."""
        noise = torch.from_numpy(prediction)[None]
        return self.scheduler.step(noise, t, latents, **self._step_kwargs, return_dict=False)[0]
