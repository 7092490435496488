"""Train the scenes model: a small Stable Diffusion pipeline on the procedural scenes world.

    python scripts/train_scenes.py --out models/scenes        (or: make scenes-model)

Three phases from one seed: the VAE learns to reconstruct scene pictures; the UNet
learns to denoise the VAE's latents given the prompt (a tenth of the prompts
dropped, for classifier-free guidance) read by the text encoder kept at its seeded
random weights; then the two learn together at a low learning rate (trained together
from the start, the encoder merged the position words before the UNet used them). The
losses weigh the pixels around objects ten times the background's: objects cover a few
percent of a picture, and their shapes are what the checker reads. Every batch is
drawn fresh from the world's training split; the held-out split is never seen. At the
end the pipeline is measured on held-out prompts with the checker and saved with
`save_pretrained`, with MODEL_CARD.md.

The VAE and the UNet phase's weights are kept in a work folder beside the output
(kept_phases); since every phase draws from its own seed, a run started again gives
the same weights as a run that never stopped.

`--precision`: bfloat16 autocasts every forward pass, mixed only the VAE's (here the
UNet's backward pass is slower in bfloat16, 0.32 s a batch against 0.22).
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel
from kept_phases import keep_phase, kept_phase, phase_settings

from core.scenes import check, render, sample_prompts
from serve.scenes_pipeline import (
    LATENT_FACTOR,
    NATIVE_SIZE,
    build_scenes_pipeline,
    training_scheduler,
)

MAX_MB = 30.0
CLAUSE_KINDS = ("background", "colour", "position", "shape", "size")
LOSS_TITLES = {
    "vae": "VAE loss (object-weighted L1 + MSE, + KL)",
    "unet": "UNet loss (object-weighted v-prediction MSE)",
    "joint": "Joint loss (the same, UNet and text encoder trained)",
}
OBJECT_WEIGHT = 10.0  # loss weight of pixels near an object against the background's
VAE_SETTINGS = ("seed", "vae_steps", "vae_batch_size", "vae_lr")  # + the VAE's precision
UNET_SETTINGS = ("unet_steps", "batch_size", "lr", "ema_decay", "drop_prompt", "precision")
PRECISIONS = {  # --precision: the forward passes of (the VAE, the UNet and text encoder)
    "float32": ("float32", "float32"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "mixed": ("bfloat16", "float32"),
}


@dataclass
class Run:
    """What the model card reports: settings, losses, figures, timings."""

    args: argparse.Namespace
    losses: dict[str, list[float]] = field(
        default_factory=lambda: {"vae": [], "unet": [], "joint": []}
    )
    seconds: dict[str, float] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    size_mb: float = 0.0


def batch(rng: random.Random, count: int) -> tuple[list[str], torch.Tensor]:
    """`count` training prompts and their pictures as a (count, 3, H, W) tensor in [-1, 1]."""
    pairs = sample_prompts(rng.getrandbits(32), count)
    images = np.stack([render(scene, NATIVE_SIZE, NATIVE_SIZE) for _, scene in pairs])
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return [prompt for prompt, _ in pairs], tensor


def object_weights(images: torch.Tensor, factor: int = 1) -> torch.Tensor:
    """Per pixel (or per latent cell, `factor` pixels a side), OBJECT_WEIGHT within two
    pixels of an object and 1 elsewhere, scaled to average 1 per picture."""
    background = images[:, :, :1, :1]  # a corner is never covered by an object
    near = ((images - background).abs().amax(1, keepdim=True) > 0.05).float()
    near = F.max_pool2d(near, 5, stride=1, padding=2)
    if factor > 1:
        near = F.max_pool2d(near, factor)
    weights = 1 + (OBJECT_WEIGHT - 1) * near
    return weights / weights.mean(dim=(1, 2, 3), keepdim=True)


def learning_rate_factor(index: int, steps: int) -> float:
    """Linear warm-up over the first 5 % of steps, then a cosine down to a tenth."""
    warmup = max(1, steps // 20)
    if index < warmup:
        return (index + 1) / warmup
    progress = (index - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def part_precision(run: Run, part: int) -> str:
    """Where `--precision` puts `part`'s forward passes (0: VAE, 1: UNet and text)."""
    return PRECISIONS[run.args.precision][part]


def autocast(run: Run, part: int) -> torch.autocast:
    """Autocast to bfloat16 where `--precision` puts `part`."""
    enabled = part_precision(run, part) == "bfloat16"
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def train_loop(
    name: str,
    steps: int,
    step: Callable[[], torch.Tensor],
    params,
    run: Run,
    lr: float,
    after_step: Callable[[], None] | None = None,
    scheduled: bool = True,
    part: int = 1,
) -> None:
    """`steps` optimiser steps of `step`'s loss (AdamW; `learning_rate_factor` when
    `scheduled`, else a constant `lr`), losses kept in `run`. The forward pass of `part`
    runs in its `--precision` (weights and optimiser stay in float32)."""
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda i: learning_rate_factor(i, steps) if scheduled else 1.0
    )
    started = time.perf_counter()
    for index in range(steps):
        with autocast(run, part):
            loss = step()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        if after_step is not None:
            after_step()
        run.losses[name].append(loss.item())
        if (index + 1) % run.args.log_every == 0 or index + 1 == steps:
            recent = statistics.fmean(run.losses[name][-run.args.log_every :])
            print(f"{name} step {index + 1}/{steps} loss {recent:.4f}", flush=True)
    run.seconds[name] = time.perf_counter() - started


def train_vae(pipe, rng: random.Random, run: Run) -> None:
    """Object-weighted reconstruction (L1 + MSE) with a light KL term; then the latents'
    scaling factor."""
    vae = pipe.vae.train()

    def step() -> torch.Tensor:
        _, images = batch(rng, run.args.vae_batch_size)
        posterior = vae.encode(images).latent_dist
        error = vae.decode(posterior.sample()).sample - images
        weighted = (object_weights(images) * (error.abs() + error**2)).mean()
        return weighted + 1e-4 * posterior.kl().mean() / images[0].numel()

    params = list(vae.parameters())
    train_loop("vae", run.args.vae_steps, step, params, run, run.args.vae_lr, part=0)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = vae.encode(batch(rng, 64)[1]).latent_dist.sample()
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))


def encode_prompts(pipe, prompts: list[str]) -> torch.Tensor:
    ids = pipe.tokenizer(
        prompts, padding="max_length", truncation=True, return_tensors="pt"
    ).input_ids
    return pipe.text_encoder(ids)[0]


def _settings(run: Run, names: tuple[str, ...], model) -> dict:
    """The arguments `names` and `model`'s architecture: what a kept phase must match."""
    return phase_settings({key: getattr(run.args, key) for key in names}, model)


def vae_phase(pipe, rng: random.Random, run: Run, work: Path) -> dict:
    """Train the VAE, or take it from `work` if a run with the same settings kept it."""
    # the VAE's own precision: its phase is the same in a bfloat16 and a mixed run
    settings = {**_settings(run, VAE_SETTINGS, pipe.vae), "precision": part_precision(run, 0)}
    state = kept_phase(work, "vae", settings)
    if state is not None:
        pipe.vae.load_state_dict(state["vae"])
        pipe.vae.register_to_config(scaling_factor=state["scaling_factor"])
        pipe.vae.eval().requires_grad_(False)
    else:
        train_vae(pipe, rng, run)
        state = {
            "settings": settings,
            "vae": pipe.vae.state_dict(),
            "scaling_factor": pipe.vae.config.scaling_factor,
            "losses": run.losses["vae"],
            "seconds": run.seconds["vae"],
        }
        keep_phase(work, "vae", state)
    run.losses["vae"], run.seconds["vae"] = state["losses"], state["seconds"]
    return settings


def unet_phase(pipe, run: Run, work: Path, vae_settings: dict) -> None:
    """Train the UNet on the frozen encoder (`train_unet`), or take it from `work` when a
    run with the same settings, VAE included, kept it."""
    settings = {"vae": vae_settings, **_settings(run, UNET_SETTINGS, pipe.unet)}
    state = kept_phase(work, "unet", settings)
    if state is not None:
        pipe.unet.load_state_dict(state["unet"])
        pipe.unet.eval()
    else:
        train_unet(pipe, run)
        state = {
            "settings": settings,
            "unet": pipe.unet.state_dict(),
            "losses": run.losses["unet"],
            "seconds": run.seconds["unet"],
        }
        keep_phase(work, "unet", state)
    run.losses["unet"], run.seconds["unet"] = state["losses"], state["seconds"]


def denoising_step(pipe, rng: random.Random, run: Run, train_encoder: bool):
    """One batch's loss: velocity (v) prediction on the frozen VAE's latents, conditioned on
    the text encoder's reading of the prompts, object-weighted."""
    noise_schedule = training_scheduler()
    scale = pipe.vae.config.scaling_factor

    def step() -> torch.Tensor:
        prompts, images = batch(rng, run.args.batch_size)
        prompts = ["" if rng.random() < run.args.drop_prompt else p for p in prompts]
        with torch.no_grad(), autocast(run, 0):
            latents = pipe.vae.encode(images).latent_dist.sample().float() * scale
        with torch.set_grad_enabled(train_encoder):
            conditions = encode_prompts(pipe, prompts)
        noise = torch.randn_like(latents)
        steps = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(prompts),))
        noisy = noise_schedule.add_noise(latents, noise, steps)
        predicted = pipe.unet(noisy, steps, conditions).sample
        target = noise_schedule.get_velocity(latents, noise, steps)
        return (object_weights(images, LATENT_FACTOR) * (predicted - target) ** 2).mean()

    return step


def train_unet(pipe, run: Run) -> None:
    """The UNet alone, on the text encoder's seeded random weights, from seed `--seed` + 1.

    The weights kept are an exponential moving average of the trained ones
    (decay `--ema-decay`), which samples cleaner than the last step's weights.
    """
    rng = random.Random(run.args.seed + 1)
    torch.manual_seed(run.args.seed + 1)
    pipe.unet.train()
    pipe.text_encoder.eval().requires_grad_(False)
    step = denoising_step(pipe, rng, run, train_encoder=False)
    params = list(pipe.unet.parameters())
    ema = EMAModel(params, decay=run.args.ema_decay)
    train_loop(
        "unet", run.args.unet_steps, step, params, run, run.args.lr, lambda: ema.step(params)
    )
    ema.copy_to(params)
    pipe.unet.eval()


def train_joint(pipe, run: Run) -> None:
    """The UNet and the text encoder together, from seed `--seed` + 2, at a constant
    `--joint-lr`; the weights kept are an EMA (decay `--joint-ema-decay`)."""
    rng = random.Random(run.args.seed + 2)
    torch.manual_seed(run.args.seed + 2)
    pipe.unet.train()
    pipe.text_encoder.train().requires_grad_(True)
    step = denoising_step(pipe, rng, run, train_encoder=True)
    params = [*pipe.unet.parameters(), *pipe.text_encoder.parameters()]
    ema = EMAModel(params, decay=run.args.joint_ema_decay)
    steps, lr = run.args.joint_steps, run.args.joint_lr
    train_loop("joint", steps, step, params, run, lr, lambda: ema.step(params), scheduled=False)
    ema.copy_to(params)
    pipe.unet.eval()
    pipe.text_encoder.eval()


def evaluate(pipe, run: Run) -> None:
    """Per kind of clause, the share that holds on held-out prompts at the default steps."""
    started = time.perf_counter()
    held = {kind: [] for kind in CLAUSE_KINDS}
    passed = []
    for index, (prompt, _) in enumerate(
        sample_prompts(run.args.seed, run.args.eval_prompts, "eval")
    ):
        generator = torch.Generator().manual_seed(index)
        with torch.no_grad():
            image = pipe(
                prompt,
                num_inference_steps=run.args.default_steps,
                guidance_scale=run.args.guidance,
                generator=generator,
                output_type="np",
            ).images[0]
        result = check((image * 255).round().astype(np.uint8), prompt)
        passed.append(result.passed)
        for clause in result.clauses:
            held[clause.name.rpartition(".")[2]].append(clause.holds)
    run.figures = {kind: statistics.fmean(v) for kind, v in held.items() if v}
    run.figures["whole prompt"] = statistics.fmean(passed) if passed else 0.0
    run.seconds["eval"] = time.perf_counter() - started


def save(pipe, out: Path, run: Run) -> None:
    """`save_pretrained` into a staging folder, the card beside it, then swap it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)
    pipe.save_pretrained(staging, safe_serialization=True)
    run.size_mb = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) / 1e6
    if run.size_mb > MAX_MB:
        shutil.rmtree(staging)
        raise SystemExit(f"the pipeline is {run.size_mb:.1f} MB, over the {MAX_MB} MB budget")
    (staging / "MODEL_CARD.md").write_text(model_card(run))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def _loss_rows(losses: list[float], rows: int = 10) -> list[str]:
    if not losses:
        return ["| - | - |"]
    chunk = max(1, len(losses) // rows)
    return [
        f"| {start + 1}-{min(start + chunk, len(losses))} | "
        f"{statistics.fmean(losses[start : start + chunk]):.4f} |"
        for start in range(0, len(losses), chunk)
    ]


def _precision_words(precision: str) -> str:
    vae, unet = PRECISIONS[precision]
    return vae if vae == unet else f"{vae} for the VAE and {unet} for the UNet and text encoder"


def model_card(run: Run) -> str:
    """MODEL_CARD.md: data, settings, losses, held-out figures, size, time."""
    a = run.args
    figures = "\n".join(f"| {k} | {v:.1%} |" for k, v in run.figures.items()) or "| - | - |"
    return "\n".join(
        [
            "# scenes: a small Stable Diffusion pipeline for the procedural scenes world",
            "",
            "Trained by `scripts/train_scenes.py` (`make scenes-model`) from seed "
            f"{a.seed}; native {NATIVE_SIZE}x{NATIVE_SIZE}; {run.size_mb:.1f} MB on disk. "
            "Prompts: `a [small|large] COLOUR SHAPE [at the POSITION] on a COLOUR "
            "background`, up to two objects joined by `and` (core/scenes).",
            "",
            "## Data",
            f"Fresh scenes from the training split (the held-out tenth never seen): "
            f"{a.vae_steps * a.vae_batch_size} pictures for the VAE, "
            f"{(a.unet_steps + a.joint_steps) * a.batch_size} prompt/picture pairs for the "
            f"UNet and text encoder ({a.drop_prompt:.0%} of prompts dropped for guidance).",
            "",
            "## Training",
            f"VAE {a.vae_steps} steps (batch {a.vae_batch_size}, lr {a.vae_lr}); UNet "
            f"{a.unet_steps} steps (batch {a.batch_size}, lr {a.lr}; the text encoder kept "
            "at its seeded random weights); then UNet and text encoder together "
            f"{a.joint_steps} steps (constant lr {a.joint_lr}). AdamW, warm-up then cosine "
            f"to a tenth but in the joint phase, pixels near objects weighted "
            f"{OBJECT_WEIGHT:g}x, weights kept as an EMA (decay {a.ema_decay}; joint "
            f"{a.joint_ema_decay}), forward passes in {_precision_words(a.precision)}, "
            f"{a.threads} torch "
            f"threads, torch {torch.__version__}. "
            "Wall time: "
            + ", ".join(f"{k} {v / 60:.1f} min" for k, v in run.seconds.items())
            + ".",
            "",
            *(
                line
                for phase, title in LOSS_TITLES.items()
                for line in (f"### {title}", "| steps | mean loss |", "| --- | --- |")
                + (*_loss_rows(run.losses[phase]), "")
            ),
            "## Held-out figures",
            f"{a.eval_prompts} held-out prompts, {a.default_steps} steps (DPM-Solver++), "
            f"guidance {a.guidance}, checked by core.scenes.check: the share of clauses "
            "that hold, by kind.",
            "| clause | holds |",
            "| --- | --- |",
            figures,
            "",
            "Targets (issue 18): background >= 95 %, colour and position >= 85 %, shape >= 70 %.",
            "Hires and seam figures: `rendercluster eval examples/suites/scenes-small.yaml`.",
            "",
        ]
    )


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models/scenes"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=2000)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--vae-batch-size", type=int, default=8)
    parser.add_argument("--unet-steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--joint-steps", type=int, default=3000)
    parser.add_argument("--joint-lr", type=float, default=1e-4)
    parser.add_argument("--joint-ema-decay", type=float, default=0.995)
    parser.add_argument("--drop-prompt", type=float, default=0.1)
    parser.add_argument("--eval-prompts", type=int, default=200)
    parser.add_argument("--default-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="mixed")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument(
        "--steps", type=int, help="Shorthand for a quick check: this many steps of each phase."
    )
    args = parser.parse_args()
    if args.steps is not None:
        args.vae_steps = args.unet_steps = args.joint_steps = args.steps
    return args


def main() -> None:
    args = arguments()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    run = Run(args)
    pipe = build_scenes_pipeline(args.seed)
    pipe.set_progress_bar_config(disable=True)
    work = args.out.parent / f".{args.out.name}-work"
    unet_phase(pipe, run, work, vae_phase(pipe, rng, run, work))
    train_joint(pipe, run)
    evaluate(pipe, run)
    save(pipe, args.out, run)
    print(
        f"saved {args.out} ({run.size_mb:.1f} MB): "
        + ", ".join(f"{k} {v:.1%}" for k, v in run.figures.items())
    )


if __name__ == "__main__":
    main()
