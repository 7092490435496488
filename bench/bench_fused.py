"""Fan-out efficiency and per-step overhead of fused renders on a null denoiser.

64 fused tiles (8 x 8 of 1024 px, overlap 128: SDXL's native tile, a 7296 x 7296
canvas, latents 912 x 912 x 4 on the router) on 8 null replicas (1 logical GPU
each) that hold their "GPU" a fixed time per crop and predict zeros; the router's
step is the real one (crops cut from the canvas, sent through Serve handles as
float16 arrays as for an fp16 SDXL, the conditioning of SDXL's shapes put once in the object store,
predictions fused in plan order, one DDIM step of the whole canvas). Efficiency =
ideal (steps x 64 x sleep / 8) / the job's `timings['steps_s']`; per-step overhead =
(steps_s - ideal) / steps, and the job's own `step_overhead_ms` (each step's wall
minus its busiest replica's compute). Target: efficiency >= 0.90.

Each repeat runs a job on a fresh router actor (as the service does: one actor per
job). Repeated for each per-replica request limit (`max_ongoing_requests`) and each
`tiles_per_call`. The decode (a null VAE: flat tiles at once) and the TIFF encode are
timed apart. Prints figures, asserts nothing. Starts and stops its own Ray.
Run: .venv/bin/python bench/bench_fused.py [--sleep S --steps N --max-ongoing N [N ...]
     --tiles-per-call N [N ...] --repeats N --tile PX]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray
from ray import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.tile_router import TileRouter  # noqa: E402
from bench.null_model import deploy_null_model, start_ray  # noqa: E402
from core.largeformat.fusion_weights import latent_plan  # noqa: E402
from core.schemas import LargeRenderJob, LargeRenderResult  # noqa: E402

APP = "bench-fused"
MODEL = "null"
REPLICAS = 8
GRID = 8  # tiles per side


def fused_job(job_id: str, side: int, args: argparse.Namespace, **fields) -> LargeRenderJob:
    """A fused job of `side` x `side` px in tiles of `--tile` px (overlap 1/8), null model."""
    return LargeRenderJob(
        job_id=job_id,
        model_name=MODEL,
        prompt="null",
        width=side,
        height=side,
        steps=args.steps,
        guidance=5.0,
        seed=7,
        tile_size=args.tile,
        native_resolution=args.tile,
        align=8,
        output_key=f"bench/{job_id}.tiff",
        mode="fused",
        format="tiff",
        max_in_flight=64,
        **fields,
    )


def run_jobs(
    args: argparse.Namespace, max_ongoing: int, tiles_per_call: int, storage: dict, spool: str
) -> None:
    """Time `--repeats` fused jobs, each on a fresh router; print each and the median."""
    overlap = args.tile // 8
    side = args.tile + (GRID - 1) * (args.tile - overlap)
    grid = latent_plan(side, side, args.tile, None, 8)
    tiles = len(grid.tiles)
    ideal = args.steps * tiles * args.sleep / REPLICAS
    crop_mb = 2 * 4 * (args.tile // 8) ** 2 / 1e6  # float16 (the null model's wire dtype)
    print(
        f"fused: {tiles} tiles of {args.tile} px ({side}x{side}, latents {grid.width}x"
        f"{grid.height}, redundancy {grid.redundancy:.3f}), {args.steps} steps, {REPLICAS} null "
        f"replicas x {args.sleep} s/crop, max_ongoing_requests {max_ongoing}, tiles_per_call "
        f"{tiles_per_call}: ideal {ideal:.3f} s; per step {tiles} float16 crops of {crop_mb:.3f} "
        f"MB "
        f"each way ({tiles * crop_mb:.1f} MB out, {tiles * crop_mb:.1f} MB back)"
    )
    runs: list[tuple[float, LargeRenderResult]] = []
    for repeat in range(args.repeats):
        router = TileRouter.remote(APP, storage, spool)
        ray.get(router.progress.remote())
        job = fused_job(
            f"fused-{max_ongoing}-{tiles_per_call}-{repeat}",
            side,
            args,
            tiles_per_call=tiles_per_call,
            replica_requests=max_ongoing,
        )
        started = time.perf_counter()
        result = ray.get(router.run.remote(job))
        wall = time.perf_counter() - started
        ray.kill(router)
        runs.append((wall, result))
        t = result.timings
        print(
            f"  repeat {repeat}: steps_s {t['steps_s']:.3f} (efficiency "
            f"{ideal / t['steps_s']:.3f}; against the replicas' measured compute "
            f"{t['step_efficiency']:.3f}), per-step overhead "
            f"{(t['steps_s'] - ideal) / args.steps * 1e3:.1f} ms (job's own "
            f"{t['step_overhead_ms']:.1f} ms; fill {t['fill_ms']:.1f} ms, drain "
            f"{t['drain_ms']:.1f} ms), fuse_s {t['fuse_s']:.3f}, sampler_s "
            f"{t['sampler_s']:.3f}, prompt_s "
            f"{t['prompt_s']:.3f}, decode_s {t['decode_s']:.3f}, encode_and_store_s "
            f"{t['encode_and_store_s']:.3f}, run wall {wall:.3f} s, replicas used "
            f"{len(result.replicas_used)}, max concurrent {result.max_concurrent_replicas}"
        )
    steps_s = statistics.median(r.timings["steps_s"] for _, r in runs)
    own = statistics.median(r.timings["step_overhead_ms"] for _, r in runs)
    efficiency = ideal / steps_s
    print(
        f"  max_ongoing_requests {max_ongoing}, tiles_per_call {tiles_per_call}, median of "
        f"{len(runs)}: step phase efficiency {efficiency:.3f} "
        f"({'meets' if efficiency >= 0.9 else 'misses'} target >= 0.90), per-step overhead "
        f"{(steps_s - ideal) / args.steps * 1e3:.1f} ms (job's own {own:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, default=0.1, help="null seconds per crop")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tile", type=int, default=1024, help="tile side in pixels")
    parser.add_argument("--max-ongoing", type=int, nargs="+", default=[2])
    parser.add_argument("--tiles-per-call", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    start_ray(gpus=REPLICAS)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fused-") as tmp:
            storage = {"kind": "local", "path": f"{tmp}/store"}
            for index, max_ongoing in enumerate(args.max_ongoing):
                if index:
                    serve.delete(APP)
                deploy_null_model(APP, MODEL, REPLICAS, args.sleep, max_ongoing)
                for tiles_per_call in args.tiles_per_call:
                    run_jobs(args, max_ongoing, tiles_per_call, storage, f"{tmp}/spool")
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
