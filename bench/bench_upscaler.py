"""Upscaler throughput on 1 and 2 replicas, and tiled vs whole-image time (issue 7).

The real `UpscalerServer` deployment serves the `upscaler` model of
`configs/local.yaml` (Real-ESRGAN animevideov3 x4, ncnn on the CPU, its real
weights) with the config's deployment options (logical GPU, `cpus_per_replica`,
`max_ongoing_requests`), except that the replica count is fixed instead of
autoscaled. ncnn runs `torch_threads` threads per replica (config: 1; printed):
on this 2-core machine two replicas of 1 thread fill both cores, while a
replica of 2 threads would already fill them alone.

Part 1: the same batch of concurrent requests, the padded tiles of one source
image exactly as the tile router cuts them (the config's tile size and context
padding), goes through a Serve handle with 1 replica, then 2, then again
(`--rounds` times, best kept). Prints output megapixels per second (the cropped
tiles the replicas return), replica utilisation (time each replica had a call
in its engine, over replicas x wall time: below 1, replicas waited for work),
replica-seconds per output megapixel (up from 1 to 2 replicas: each replica
computed slower, sharing the cores) and parallel efficiency = MP/s(2) /
(2 x MP/s(1)); 1.0 is perfect.

Part 2, on 2 replicas: the same image upscaled whole by one call against the
production path (every `POST /v1/upscale` job is tiled): `resolve_upscale`
builds the job and a fresh `TileRouter` actor fans its tiles out over the
replicas, blends them and writes the PNG to the store. The whole-image call is
timed alone and with the write the tiled job includes (the router's libvips
PNG writer, then the store); alternated `--repeats` times, best kept. Also the
PSNR of the tiled result against the whole-image one.

Prints figures, asserts nothing; starts and stops its own Ray (2 CPUs, 2
logical GPUs), store and spool in a temporary directory.

Run: .venv/bin/python bench/bench_upscaler.py [--width 512 --height 384 --threads N
     --rounds 2 --repeats 2]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
from PIL import Image
from ray import serve
from ray.serve.handle import DeploymentHandle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.tile_router import TileRouter  # noqa: E402
from bench.null_model import start_ray, wait_replicas  # noqa: E402
from core.config import ClusterConfig, ModelConfig, deployment_name  # noqa: E402
from core.config_file import load_config  # noqa: E402
from core.deployment_options import model_deployment_options  # noqa: E402
from core.imaging import encode_base64, encode_image  # noqa: E402
from core.largeformat.image_writer import StreamingImageWriter  # noqa: E402
from core.largeformat.upscaling import UpscaleRequest, UpscaleResult, plan_upscale  # noqa: E402
from core.schemas import LargeRenderResult, UpscaleRequestBody  # noqa: E402
from core.store import ArtifactStore, open_store  # noqa: E402
from core.validation import resolve_upscale  # noqa: E402
from serve.upscaler_server import UpscalerServer  # noqa: E402
from tests.unit.test_upscaler import psnr, scene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = "bench-upscaler"
MODEL = "upscaler"


@dataclass(frozen=True)
class BatchRun:
    """One batch of concurrent upscale calls."""

    wall_s: float
    megapixels: float  # output pixels returned, in millions
    busy_s: float  # summed over the replicas: time each had a call in its engine
    replicas_used: int

    @property
    def mp_per_s(self) -> float:
        return self.megapixels / self.wall_s


def bench_config(store: Path, threads: int | None) -> ClusterConfig:
    """`configs/local.yaml` with the store in `store` and the upscaler's ncnn threads set."""
    base = load_config(REPO / "configs" / "local.yaml")
    model = base.models[MODEL]
    if threads is not None:
        model = model.model_copy(update={"torch_threads": threads})
    return base.model_copy(
        update={
            "storage": base.storage.model_copy(update={"path": store}),
            "models": {**base.models, MODEL: model},
        }
    )


def deploy(model: ModelConfig, replicas: int, cache_dir: str) -> None:
    """Deploy (or rescale) the upscaler server with a fixed replica count; wait for it."""
    options = model_deployment_options(MODEL, model)
    del options["autoscaling_config"]
    deployment = UpscalerServer.options(**options, num_replicas=replicas)
    app = deployment.bind(MODEL, model.model_dump(mode="json"), cache_dir)
    serve.run(app, name=APP, route_prefix=None, blocking=False)
    wait_replicas(APP, MODEL, replicas)


def busy_s(results: list[UpscaleResult]) -> float:
    """Seconds each replica had at least one call in its engine, summed over the replicas.

    A call's `compute_s` counts from before the engine's lock, so the intervals of one
    replica's calls overlap: their union is the time the replica was busy.
    """
    total = 0.0
    for replica in {result.replica for result in results}:
        spans = sorted(
            (result.started_at, result.started_at + result.compute_s)
            for result in results
            if result.replica == replica
        )
        covered_to = float("-inf")
        for start, end in spans:
            total += max(0.0, end - max(start, covered_to))
            covered_to = max(covered_to, end)
    return total


def run_batch(handle: DeploymentHandle, requests: list[UpscaleRequest]) -> BatchRun:
    """Send every request at once; wait for all answers."""
    started = time.perf_counter()
    responses = [handle.upscale.remote(request) for request in requests]
    results: list[UpscaleResult] = [response.result() for response in responses]
    wall_s = time.perf_counter() - started
    return BatchRun(
        wall_s=wall_s,
        megapixels=sum(result.image.shape[0] * result.image.shape[1] for result in results) / 1e6,
        busy_s=busy_s(results),
        replicas_used=len({result.replica for result in results}),
    )


def replica_scaling(
    model: ModelConfig, image: np.ndarray, rounds: int, cache_dir: str
) -> dict[int, BatchRun]:
    """Best batch run (by MP/s) on 1 and on 2 replicas, alternating the count `rounds` times."""
    options = model.upscaler
    assert options is not None  # an upscaler model
    plan = plan_upscale(
        image.shape[1], image.shape[0], options.scale, options.tile_size, options.context_padding
    )
    requests = [padded.request(image) for padded in plan.tiles]
    best: dict[int, BatchRun] = {}
    for _ in range(rounds):
        for replicas in (1, 2):
            deploy(model, replicas, cache_dir)
            handle = serve.get_deployment_handle(deployment_name(MODEL), APP)
            run_batch(handle, requests[: 2 * replicas])  # warm-up: every replica, the handle
            run = run_batch(handle, requests)
            if replicas not in best or run.mp_per_s > best[replicas].mp_per_s:
                best[replicas] = run
    return best


def upscale_whole(
    handle: DeploymentHandle, image: np.ndarray, store: ArtifactStore, spool: Path
) -> tuple[float, float, np.ndarray]:
    """One call on the whole image: (call s, call + write s, result).

    The write is the router's: `StreamingImageWriter` (libvips PNG), then the store.
    """
    started = time.perf_counter()
    result: UpscaleResult = handle.upscale.remote(UpscaleRequest(image)).result()
    call_s = time.perf_counter() - started
    height, width = result.image.shape[:2]
    spool.mkdir(parents=True, exist_ok=True)
    with StreamingImageWriter(spool / "whole.png", width, height, "png") as writer:
        writer.write_rows(0, result.image)
        path = writer.commit()
    try:
        store.put_file("bench/whole.png", path)
    finally:
        path.unlink()
    return call_s, time.perf_counter() - started, result.image


def upscale_tiled(
    config: ClusterConfig, image: np.ndarray, spool: str, job_id: str
) -> tuple[float, float, LargeRenderResult]:
    """The production upscale path: validated job, fresh router actor.

    Returns the wall time with the router's start, the wall time from the router
    up and answering (a job takes such a warm router from the supervisor's pool),
    and the result.
    """
    body = UpscaleRequestBody(image=encode_base64(encode_image(image, "png")), scale=4)
    job, _ = resolve_upscale(body, config, job_id, f"bench/{job_id}.png")
    started = time.perf_counter()
    router = TileRouter.remote(APP, config.storage.model_dump(mode="json"), spool)
    try:
        ray.get(router.where.remote())
        ready = time.perf_counter()
        result: LargeRenderResult = ray.get(router.upscale.remote(job))
    finally:
        ray.kill(router, no_restart=True)
    ended = time.perf_counter()
    return ended - started, ended - ready, result


@dataclass(frozen=True)
class TiledVsWhole:
    """Best times of the whole-image call and of the tiled job on the same image."""

    call_s: float  # the whole-image call alone
    whole_s: float  # the call, then the PNG written to the store
    tiled_s: float  # the tiled job, router actor start included
    warm_s: float  # the tiled job on a router already started (as jobs run)
    tiled: LargeRenderResult  # of the fastest tiled job
    psnr_db: float  # tiled result against the whole-image result


def tiled_vs_whole(
    config: ClusterConfig, image: np.ndarray, repeats: int, spool: str
) -> TiledVsWhole:
    """Whole-image call and tiled job on `image`, alternated `repeats` times; best of each."""
    store = open_store(config.storage)
    handle = serve.get_deployment_handle(deployment_name(MODEL), APP)
    calls, wholes, tiled_runs = [], [], []
    for index in range(repeats):
        call_s, whole_s, whole_image = upscale_whole(handle, image, store, Path(spool))
        calls.append(call_s)
        wholes.append(whole_s)
        tiled_runs.append(upscale_tiled(config, image, spool, f"tiled-{index}"))
    tiled_s, _, tiled = min(tiled_runs, key=lambda run: run[0])
    warm_s = min(run[1] for run in tiled_runs)
    tiled_image = np.asarray(Image.open(io.BytesIO(store.get_bytes(tiled.output_key))))
    return TiledVsWhole(
        min(calls), min(wholes), tiled_s, warm_s, tiled, psnr(tiled_image, whole_image)
    )


def report(
    args: argparse.Namespace,
    model: ModelConfig,
    info: dict[str, Any],
    load_before: float,
    scaling: dict[int, BatchRun],
    compared: TiledVsWhole,
) -> None:
    """Print both parts' figures and ratios."""
    options = model.upscaler
    assert options is not None  # an upscaler model
    print(
        f"{model.source} x{options.scale}: {args.width}x{args.height} -> "
        f"{args.width * options.scale}x{args.height * options.scale}; tiles of "
        f"{options.tile_size} px + {options.context_padding} px context; device "
        f"{info['device']}, ncnn threads per replica {info['threads']}, num_cpus per replica "
        f"{model.cpus_per_replica}, max_ongoing_requests {model.max_ongoing_requests}; load "
        f"average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on "
        f"{os.cpu_count()} cores"
    )
    for replicas, run in sorted(scaling.items()):
        utilisation = run.busy_s / (replicas * run.wall_s)
        print(
            f"{replicas} replica(s): {run.megapixels:.2f} MP out in {run.wall_s:.2f} s = "
            f"{run.mp_per_s:.3f} MP/s; utilisation {utilisation:.2f}; "
            f"{run.busy_s / run.megapixels:.2f} replica-s per MP; replicas used "
            f"{run.replicas_used}; best of {args.rounds}"
        )
    efficiency = scaling[2].mp_per_s / (2 * scaling[1].mp_per_s)
    print(f"parallel efficiency MP/s(2) / (2 x MP/s(1)) = {efficiency:.3f}")
    tiled = compared.tiled
    megapixels = tiled.width * tiled.height / 1e6
    print(
        f"whole image, one call: {compared.call_s:.2f} s "
        f"({megapixels / compared.call_s:.3f} MP/s); with the PNG write to the store "
        f"{compared.whole_s:.2f} s"
    )
    timings = ", ".join(f"{name} {value:.2f}" for name, value in tiled.timings.items())
    print(
        f"tiled, router on 2 replicas: {compared.tiled_s:.2f} s "
        f"({megapixels / compared.tiled_s:.3f} MP/s), of which router actor start and job "
        f"transfer {compared.tiled_s - tiled.timings['total_s']:.2f} s; {tiled.tiles} tiles, "
        f"redundancy {tiled.redundancy:.2f}, replicas used {len(tiled.replicas_used)}; "
        f"router timings (s): {timings}"
    )
    print(
        f"tiled / whole wall time: {compared.tiled_s / compared.whole_s:.3f} (vs whole with "
        f"write), {compared.tiled_s / compared.call_s:.3f} (vs the call alone); best of "
        f"{args.repeats}; tiled PSNR {compared.psnr_db:.1f} dB vs the whole-image result"
    )
    print(
        f"tiled on a router already started (a job takes one from the warm pool): "
        f"{compared.warm_s:.2f} s; tiled / whole wall time: "
        f"{compared.warm_s / compared.whole_s:.3f} (vs whole with write), "
        f"{compared.warm_s / compared.call_s:.3f} (vs the call alone); best of {args.repeats}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512, help="source image width")
    parser.add_argument("--height", type=int, default=384, help="source image height")
    parser.add_argument("--threads", type=int, default=None, help="ncnn threads (config's)")
    parser.add_argument("--rounds", type=int, default=2, help="1-then-2-replica rounds")
    parser.add_argument("--repeats", type=int, default=2, help="tiled vs whole repeats")
    args = parser.parse_args()
    image = scene(args.width, args.height)
    load_before = os.getloadavg()[0]
    start_ray(gpus=2, cpus=2)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-upscaler-") as tmp:
            config = bench_config(Path(tmp) / "store", args.threads)
            model = config.models[MODEL]
            scaling = replica_scaling(model, image, args.rounds, tmp)
            handle = serve.get_deployment_handle(deployment_name(MODEL), APP)
            info = handle.info.remote().result()
            compared = tiled_vs_whole(config, image, args.repeats, f"{tmp}/spool")
    finally:
        serve.shutdown()
        ray.shutdown()
    report(args, model, info, load_before, scaling, compared)


if __name__ == "__main__":
    main()
