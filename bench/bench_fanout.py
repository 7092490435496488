"""Fan-out efficiency of `TileRouter` on a null model, and how tile arrays travel.

Part 1: 64 tiles (8 x 8 of 256 px, tiled mode) on 8 null replicas (1 logical
GPU each) that sleep a fixed time per tile, one tile at a time. Efficiency =
ideal time (tiles x sleep / replicas) / measured time of the router's tile
phase (`timings['tiles_s']`); also against the wall time of the `run` call.
The replica ramp (the job's `replica_ramp_s`): from the first tile's start to
the first start of the last replica to get one.
Each repeat runs a job on a fresh router actor (one actor per job; the actor's
start is reported apart), a second job on the same actor (its handle already
warm), and a job on a "pool" router: started and prepared (`TileRouter.prepare`,
its model's handle opened) before the other two, as the job supervisor's warm
pool keeps them, so that is how the service's jobs start. Repeated for each
per-replica request limit (`max_ongoing_requests`); the router keeps replicas x
that limit tiles in flight. Target: >= 0.95 (issue 20).

Part 2 (ray#47590): from an async actor like the router, N handle calls that
each carry a 1024x1024x3 uint8 array to a replica and back, by value (the
array inside the call) against by reference (`ray.put`, the ref passed in a
list and fetched by the replica); the replica returns the array by value in
both cases. Sequential, and 8 at once.

Prints figures, asserts nothing. Starts and stops its own Ray.
Run: .venv/bin/python bench/bench_fanout.py [--sleep S --max-ongoing N [N ...]
     --repeats N --calls N --rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
from ray import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.tile_router import TileRouter, tile_handle  # noqa: E402
from bench.null_model import deploy_null_model, start_ray  # noqa: E402
from core.largeformat.tiling import plan_tiles  # noqa: E402
from core.schemas import LargeRenderJob, LargeRenderResult  # noqa: E402

APP = "bench-fanout"
MODEL = "null"
REPLICAS = 8
TILE = 256
GRID = 8  # tiles per side
TRANSFER_SHAPE = (1024, 1024, 3)
TARGET = 0.95  # tile phase efficiency (issue 20; was 0.90)


def tile_job(job_id: str, side: int, overlap: int, max_ongoing: int) -> LargeRenderJob:
    """A tiled-mode job of `side` x `side` px on the null model (`max_ongoing`: the model's
    `max_ongoing_requests`, as the service puts it in every job)."""
    return LargeRenderJob(
        job_id=job_id,
        model_name=MODEL,
        prompt="null",
        width=side,
        height=side,
        steps=1,
        guidance=1.0,
        seed=7,
        tile_size=TILE,
        native_resolution=TILE,
        align=8,
        output_key=f"bench/{job_id}.png",
        mode="tiled",
        overlap=overlap,
        replica_requests=max_ongoing,
    )


@ray.remote(num_cpus=0.1)
class TransferProbe:
    """Times handle calls carrying one large array each way, from an async actor."""

    def __init__(self) -> None:
        self.pixels = np.random.default_rng(0).integers(0, 256, TRANSFER_SHAPE, np.uint8)
        self.handle = tile_handle(APP, MODEL)  # calls made as the router makes them

    async def _by_value(self) -> int:
        return (await self.handle.echo.remote(self.pixels)).nbytes

    async def _by_reference(self) -> int:
        return (await self.handle.echo_ref.remote([ray.put(self.pixels)])).nbytes

    async def seconds_per_call(self, by_reference: bool, calls: int, concurrency: int) -> float:
        """Mean wall seconds per call over `calls` calls made `concurrency` at a time."""
        call = self._by_reference if by_reference else self._by_value
        started = time.perf_counter()
        for _ in range(calls // concurrency):
            await asyncio.gather(*(call() for _ in range(concurrency)))
        return (time.perf_counter() - started) / (calls // concurrency * concurrency)


def fanout(args: argparse.Namespace, max_ongoing: int, store_dir: str, spool_dir: str) -> None:
    """Deploy the null model with `max_ongoing` requests per replica and time router jobs."""
    deploy_null_model(APP, MODEL, REPLICAS, args.sleep, max_ongoing)
    overlap = TILE // 8
    side = TILE + (GRID - 1) * (TILE - overlap)
    tiles = len(plan_tiles(side, side, TILE, overlap).tiles)
    ideal = tiles * args.sleep / REPLICAS
    storage = {"kind": "local", "path": store_dir}
    print(
        f"fan-out: {tiles} tiles of {TILE} px ({side}x{side}, overlap {overlap}), "
        f"{REPLICAS} null replicas x {args.sleep} s/tile, max_ongoing_requests {max_ongoing}, "
        f"max_in_flight {LargeRenderJob.max_in_flight}: ideal {ideal:.3f} s"
    )
    kinds = ("cold", "warm", "pool")
    results: dict[str, list[tuple[float, LargeRenderResult]]] = {kind: [] for kind in kinds}
    for repeat in range(args.repeats):
        pooled = TileRouter.remote(APP, storage, spool_dir)
        prepared = pooled.prepare.remote([MODEL])
        started = time.perf_counter()
        router = TileRouter.remote(APP, storage, spool_dir)
        ray.get(router.progress.remote())
        print(f"  repeat {repeat}: router actor started in {time.perf_counter() - started:.3f} s")
        assert ray.get(prepared) == [MODEL]
        for kind in kinds:
            job = tile_job(f"fanout-{max_ongoing}-{repeat}-{kind}", side, overlap, max_ongoing)
            started = time.perf_counter()
            result = ray.get((pooled if kind == "pool" else router).run.remote(job))
            wall = time.perf_counter() - started
            results[kind].append((wall, result))
            print(
                f"    {kind} router: tiles_s {result.timings['tiles_s']:.3f} "
                f"(efficiency {ideal / result.timings['tiles_s']:.3f}), run wall {wall:.3f} s "
                f"(efficiency {ideal / wall:.3f}), blend_s {result.timings['blend_s']:.3f}, "
                f"replicas used {len(result.replicas_used)}, "
                f"max concurrent {result.max_concurrent_replicas}, "
                f"ramp {result.replica_ramp_s * 1000:.0f} ms"
            )
        ray.kill(router)
        ray.kill(pooled)
    for kind, runs in results.items():
        tiles_s = statistics.median(r.timings["tiles_s"] for _, r in runs)
        wall = statistics.median(w for w, _ in runs)
        efficiency = ideal / tiles_s
        ramp = statistics.median(r.replica_ramp_s for _, r in runs)
        print(
            f"  max_ongoing_requests {max_ongoing}, {kind} router, median of {len(runs)}: "
            f"tile phase efficiency {efficiency:.3f} "
            f"({'meets' if efficiency >= TARGET else 'misses'} target >= {TARGET:.2f}), "
            f"run wall efficiency {ideal / wall:.3f}, "
            f"replica ramp {ramp * 1000:.0f} ms (the last replica's first tile after the first's)"
        )


def transfer(args: argparse.Namespace) -> None:
    probe = TransferProbe.remote()
    megabytes = np.prod(TRANSFER_SHAPE) / 1e6
    print(f"transfer: {megabytes:.1f} MB uint8 array to a replica and back, {args.calls} calls")
    for concurrency in (1, REPLICAS):
        for by_reference in (False, True):  # warm-up
            ray.get(probe.seconds_per_call.remote(by_reference, concurrency, concurrency))
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):  # interleaved so that machine load is shared
            for by_reference in (False, True):
                calls = args.calls // args.rounds
                seconds = ray.get(probe.seconds_per_call.remote(by_reference, calls, concurrency))
                times[by_reference].append(seconds)
        value, reference = (statistics.median(times[k]) for k in (False, True))
        print(
            f"  {concurrency} at a time: by value {value * 1e3:.2f} ms/call, "
            f"by ray.put reference {reference * 1e3:.2f} ms/call, "
            f"value / reference {value / reference:.3f} (> 1: the reference is faster)"
        )
    ray.kill(probe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, default=0.25, help="null model seconds per tile")
    parser.add_argument(
        "--max-ongoing",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="per-replica request limits to compare (the last one also serves the transfers)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=96, help="transfer calls per mode")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved transfer rounds")
    args = parser.parse_args()
    start_ray(gpus=REPLICAS)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
            for index, max_ongoing in enumerate(args.max_ongoing):
                if index:
                    serve.delete(APP)
                fanout(args, max_ongoing, f"{tmp}/store", f"{tmp}/spool")
        transfer(args)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
