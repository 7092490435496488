"""Ours against diffusers' `StableDiffusionPanoramaPipeline` (MultiDiffusion) at 2048x512.

Same tiny random-weight model (`tiny:0`, the config's `quality`), same prompt,
seed, steps and guidance. Ours: the router's hires (base render, Lanczos
upscale, img2img refine of each tile) and tiled (txt2img per tile) modes on
the embedded cluster (4 logical GPUs, `quality` fixed at `--replicas`
replicas of 1 torch thread each); the job is built by the service's own
`resolve_large`, so tiles, overlap and strength are the config's defaults.
Theirs: the panorama pipeline in this process with `--threads` torch threads,
its default 64-latent (512 px) window and 8-latent stride. Both outputs are
scored with `core.largeformat.seams.seam_score` against the same tile plan
(`plan_tiles(2048, 512, 256)`).

Fused (`"mode": "fused"`), after that, at 1, 2 and 4 replicas (`--fused-replicas`;
the app is redeployed at each count): 'gaussian' with tiles of the panorama's
window (512 px) at the default overlap (1/8), and 'uniform' with the panorama's
window and stride (tiles of 512 px overlapping by 448): the same views, the same
work. The uniform output is compared with the panorama's, decoded in tiles as the
service does, and decoded whole (`decode_tile` over the canvas) to show what the
fusion alone changes.

Wall times are best of `--repeats` (after a warm-up of each), interleaved so
that machine load is shared. Redundancy: pixels computed per canvas pixel
(tile or view area processed / canvas area). Random weights draw noise: the
seam scores say how each output changes across our seam lines against inside
the tiles, not how good either image looks; the times are the comparison that
matters. Prints figures, asserts nothing. Starts and stops its own Ray.
Run: .venv/bin/python bench/bench_panorama.py [--replicas N --threads N --repeats N
     --fused-replicas N [N ...]]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch
from diffusers import StableDiffusionPanoramaPipeline
from PIL import Image
from ray import serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actors.tile_router import TileRouter  # noqa: E402
from bench.null_model import free_port, wait_replicas  # noqa: E402
from core.config import APP_NAME, ClusterConfig  # noqa: E402
from core.config_file import load_config  # noqa: E402
from core.largeformat.fusion_weights import latent_plan  # noqa: E402
from core.largeformat.seams import seam_score  # noqa: E402
from core.largeformat.tiling import TilePlan, plan_tiles  # noqa: E402
from core.schemas import LargeRenderJob, RenderRequestBody  # noqa: E402
from core.validation import resolve_large  # noqa: E402
from serve.app import application  # noqa: E402
from serve.local_cluster import start_local_cluster  # noqa: E402
from serve.tiny_pipeline import tiny_pipeline_dir  # noqa: E402

MODEL = "quality"
WIDTH, HEIGHT, TILE = 2048, 512, 256
MAX_SIDE = 8192  # the longest canvas side searched for the worst redundancy
PROMPT = "a harbour town at dusk, wide panorama"
SEED = 11
STEPS = 4


def cluster_config(store: Path, replicas: int) -> ClusterConfig:
    """configs/local.yaml with only `quality`, at a fixed replica count, storing in `store`."""
    data = load_config(ROOT / "configs" / "local.yaml").model_dump(mode="json")
    quality = data["models"][MODEL]
    quality["autoscaling"].update(min_replicas=replicas, max_replicas=replicas)
    data.update(models={MODEL: quality}, styles={}, default_style=None, pipelines={})
    data["storage"]["path"] = str(store)
    return ClusterConfig.model_validate(data)


class Ours:
    """Large-format jobs through a `TileRouter` on the embedded cluster."""

    def __init__(self, config: ClusterConfig, spool: Path):
        self.config = config
        self.spool = spool
        self.store = Path(config.storage.path)
        self.runs = 0

    def job(self, mode: str, width: int, height: int, **fields) -> LargeRenderJob:
        """The job the API would run; `fields` go into the request (`decode_tile` into the
        job: the API does not take it)."""
        self.runs += 1
        decode_tile = fields.pop("decode_tile", 0)
        body = RenderRequestBody(
            prompt=PROMPT,
            model=MODEL,
            width=width,
            height=height,
            steps=STEPS,
            seed=SEED,
            mode=mode,
            **fields,
        )
        job_id = f"panorama-{mode}-{self.runs}"
        job, _ = resolve_large(body, self.config, job_id, f"bench/{job_id}.png")
        return dataclasses.replace(job, decode_tile=decode_tile)

    def render(
        self, mode: str, width: int, height: int, **fields
    ) -> tuple[float, np.ndarray, dict]:
        """Run one job on a fresh router; (run wall s, output pixels, result timings)."""
        storage = self.config.storage.model_dump(mode="json")
        router = TileRouter.remote(APP_NAME, storage, str(self.spool))
        ray.get(router.progress.remote())
        started = time.perf_counter()
        result = ray.get(router.run.remote(self.job(mode, width, height, **fields)))
        wall = time.perf_counter() - started
        ray.kill(router)
        path = self.store / result.output_key
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        path.unlink()
        return wall, pixels, result.timings


class Theirs:
    """MultiDiffusion: the panorama pipeline built from the same saved tiny model."""

    def __init__(self, config: ClusterConfig, threads: int):
        torch.set_num_threads(threads)
        self.pipe = StableDiffusionPanoramaPipeline.from_pretrained(
            tiny_pipeline_dir(config.model_cache_dir, 0),
            safety_checker=None,
            requires_safety_checker=False,
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.guidance = config.models[MODEL].default_guidance

    def views(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The pipeline's windows over the canvas, in pixels (y0, y1, x0, x1)."""
        factor = self.pipe.vae_scale_factor  # get_views takes pixels, answers latents
        return [
            tuple(edge * factor for edge in view) for view in self.pipe.get_views(height, width)
        ]

    def render(self, width: int, height: int, steps: int = STEPS) -> tuple[float, np.ndarray]:
        started = time.perf_counter()
        output = self.pipe(
            PROMPT,
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=self.guidance,
            generator=torch.Generator().manual_seed(SEED),
            output_type="np",
        )
        wall = time.perf_counter() - started
        return wall, (output.images[0] * 255).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="quality replicas (<= 4)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the panorama")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--fused-replicas", type=int, nargs="*", default=[1, 2, 4], help="fused: replica counts"
    )
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    plan = plan_tiles(WIDTH, HEIGHT, TILE)
    with tempfile.TemporaryDirectory(prefix="bench-panorama-") as tmp:
        config = cluster_config(Path(tmp) / "store", args.replicas)
        cluster = start_local_cluster(config, gpus=4, port=free_port())
        try:
            wait_replicas(APP_NAME, MODEL, args.replicas)
            ours = Ours(config, Path(tmp) / "spool")
            theirs = Theirs(config, args.threads)
            print(
                f"{WIDTH}x{HEIGHT}, tiny random-weight model '{MODEL}' ({STEPS} steps, guidance "
                f"{theirs.guidance}): outputs are noise, compare the times; seam scores only "
                f"show whether our tile seams show. Ours: {args.replicas} replicas x "
                f"{config.models[MODEL].torch_threads} torch thread; theirs: in-process, "
                f"{args.threads} torch threads. Cluster started in {cluster.startup_s:.1f} s."
            )
            started = time.perf_counter()
            ours.render("tiled", 512, 256)  # warm-up: first calls on every replica
            ours.render("tiled", 512, 256)
            theirs.render(512, 512, steps=1)
            print(f"  warm-up: {time.perf_counter() - started:.1f} s")
            best = {"hires": float("inf"), "tiled": float("inf"), "panorama": float("inf")}
            scores: dict[str, float] = {}
            for repeat in range(args.repeats):
                for mode in ("hires", "tiled"):
                    wall, pixels, timings = ours.render(mode, WIDTH, HEIGHT)
                    best[mode] = min(best[mode], wall)
                    scores[mode] = seam_score(pixels, plan)
                    print(f"  repeat {repeat} ours {mode}: wall {wall:.2f} s, router {timings}")
                wall, pixels = theirs.render(WIDTH, HEIGHT)
                reference = pixels
                best["panorama"] = min(best["panorama"], wall)
                scores["panorama"] = seam_score(pixels, plan)
                print(f"  repeat {repeat} theirs panorama: wall {wall:.2f} s")
            fused = fused_sweep(args, config, ours, reference) if args.fused_replicas else None
        finally:
            cluster.shutdown()
    report(plan, theirs.views(WIDTH, HEIGHT), best, scores, args.repeats)
    if fused is not None:
        report_fused(fused, best["panorama"], args.repeats)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


WINDOW, STRIDE = 512, 64  # the panorama pipeline's defaults (64 and 8 latents)


def redeploy(config: ClusterConfig, replicas: int) -> None:
    """The app again with `quality` at exactly `replicas` replicas."""
    data = config.model_dump(mode="json")
    data["models"][MODEL]["autoscaling"].update(min_replicas=replicas, max_replicas=replicas)
    fixed = ClusterConfig.model_validate(data)
    serve.run(application(fixed), name=APP_NAME, route_prefix="/", blocking=False)
    wait_replicas(APP_NAME, MODEL, replicas)


def difference(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """Mean and largest absolute difference in levels, and PSNR in dB."""
    delta = ours.astype(np.float64) - theirs.astype(np.float64)
    mse = float(np.mean(delta**2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
    return {"mean": float(np.abs(delta).mean()), "max": float(np.abs(delta).max()), "psnr": psnr}


def fused_sweep(
    args: argparse.Namespace, config: ClusterConfig, ours: Ours, theirs: np.ndarray
) -> dict:
    """Fused walls at each replica count (best of `--repeats`) and, at the last count, the
    uniform output's difference from the panorama's (tiled decode, then whole decode)."""
    uniform = {"fuse": "uniform", "tile_size": WINDOW, "overlap": WINDOW - STRIDE}
    walls: dict[int, dict[str, float]] = {}
    for replicas in args.fused_replicas:
        redeploy(config, replicas)
        ours.render("fused", 512, 256)  # warm-up: first fused calls on every replica
        best = {"gaussian": float("inf"), "uniform": float("inf")}
        for repeat in range(args.repeats):
            for name, fields in (("gaussian", {"tile_size": WINDOW}), ("uniform", uniform)):
                wall, pixels, timings = ours.render("fused", WIDTH, HEIGHT, **fields)
                best[name] = min(best[name], wall)
                if name == "uniform":
                    tiled_decode = pixels
                print(
                    f"  {replicas} replica(s), repeat {repeat} ours fused {name}: wall "
                    f"{wall:.2f} s, router {timings}"
                )
        walls[replicas] = best
    _, whole, _ = ours.render("fused", WIDTH, HEIGHT, decode_tile=WIDTH, **uniform)
    return {
        "walls": walls,
        "tiled decode": difference(tiled_decode, theirs),
        "whole decode": difference(whole, theirs),
    }


def report_fused(fused: dict, panorama_wall: float, repeats: int) -> None:
    """Print fused walls by replica count against the panorama, redundancy and differences."""
    gaussian = latent_plan(WIDTH, HEIGHT, WINDOW, None, 8)
    native = latent_plan(WIDTH, HEIGHT, TILE, None, 8)
    uniform = latent_plan(WIDTH, HEIGHT, WINDOW, WINDOW - STRIDE, 8)
    print(
        f"fused: gaussian in {len(gaussian.tiles)} tiles of {WINDOW} px (default overlap "
        f"{gaussian.overlap * 8} px): redundancy {gaussian.redundancy:.2f} "
        f"({'meets' if gaussian.redundancy <= 1.5 else 'misses'} target <= 1.5; in the "
        f"model's native {TILE} px tiles {native.redundancy:.2f}); uniform in the panorama's "
        f"{len(uniform.tiles)} views: redundancy {uniform.redundancy:.2f}"
    )
    for replicas, best in fused["walls"].items():
        print(
            f"  {replicas} replica(s): gaussian wall {best['gaussian']:6.2f} s, uniform wall "
            f"{best['uniform']:6.2f} s (best of {repeats}); panorama / gaussian "
            f"{panorama_wall / best['gaussian']:.2f}x, panorama / uniform "
            f"{panorama_wall / best['uniform']:.2f}x"
        )
    for name in ("tiled decode", "whole decode"):
        d = fused[name]
        print(
            f"  uniform vs panorama output ({name}): mean |difference| {d['mean']:.3f} levels, "
            f"max {d['max']:.0f}, PSNR {d['psnr']:.1f} dB"
        )


def worst_axis_redundancy(tile: int, overlap: int, align: int) -> tuple[int, float]:
    """The canvas side of more than one tile whose tiles compute the most per pixel, and
    that ratio; a canvas's redundancy is the product of its two sides' ratios."""
    ratios = (
        (sum(plan_tiles(side, 1, tile, overlap, align).widths) / side, side)
        for side in range(tile + 1, MAX_SIDE + 1)
    )
    ratio, side = max(ratios)
    return side, ratio


def report(
    plan: TilePlan,
    views: list[tuple[int, int, int, int]],
    best: dict[str, float],
    scores: dict[str, float],
    repeats: int,
) -> None:
    """Print the side-by-side table and the panorama / ours ratios."""
    y0, y1, x0, x1 = views[0]
    redundancy = {
        "hires": plan.redundancy,
        "tiled": plan.redundancy,
        "panorama": sum((b - a) * (d - c) for a, b, c, d in views) / (WIDTH * HEIGHT),
    }
    stride = views[1][2] - x0 if len(views) > 1 else 0
    print(
        f"tile plan: {len(plan.tiles)} tiles of {TILE} px, overlap {plan.overlap}; "
        f"panorama: {len(views)} views of {x1 - x0}x{y1 - y0} px, stride {stride} px"
    )
    side, worst = worst_axis_redundancy(plan.tile_w, plan.overlap, plan.align)
    print(
        f"  worst redundancy of any canvas of >= 2 tiles per axis (sides {plan.tile_w + 1}-"
        f"{MAX_SIDE} px): {worst * worst:.3f} at {side}x{side} (target <= 1.35)"
    )
    for name in ("hires", "tiled", "panorama"):
        print(
            f"  {name:8s}: wall {best[name]:6.2f} s (best of {repeats}), "
            f"seam score {scores[name]:.3f}, redundancy {redundancy[name]:.2f}"
        )
    for name in ("hires", "tiled"):
        print(
            f"  panorama / {name}: wall {best['panorama'] / best[name]:.2f}x, "
            f"seam score {scores['panorama'] / scores[name]:.3f}, "
            f"redundancy {redundancy['panorama'] / redundancy[name]:.2f}x"
        )


if __name__ == "__main__":
    main()
