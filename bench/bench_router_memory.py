"""Router memory: peak RSS of the `TileRouter` actor process over its baseline, by canvas size.

Each size runs on a fresh router actor in tiled mode (tiles of 512 px, PNG
output, local store in a temporary directory) against 8 null replicas that
return a flat tile at once. The actor's pid comes from Ray's actor table; a
thread samples /proc/<pid>/status while the job runs. Baseline: VmRSS after a
small warm-up job on the same actor (Serve handle, libvips and the like are
loaded); peak: VmHWM after the measured job. The sampled peaks of RssAnon
(the router's own heap) and RssShmem (object-store pages it has mapped: tiles
arrive as zero-copy views of Ray's shared memory) show where the memory is.

Width series 8192x2048, 16384x4096, 32768x8192: target largest / smallest
<= 1.5. Row bands are full width, so this series is expected to grow with the
width (4x here); the height series 8192x2048, 8192x8192, 8192x32768 shows
whether memory is flat in height, as the design asks.

Prints figures, asserts nothing. Starts and stops its own Ray.
Run: .venv/bin/python bench/bench_router_memory.py [--tile T --max-in-flight N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import ray
from ray import serve
from ray._private import state

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.tile_router import TileRouter  # noqa: E402
from bench.null_model import deploy_null_model, start_ray  # noqa: E402
from core.schemas import LargeRenderJob, LargeRenderResult  # noqa: E402

APP = "bench-memory"
MODEL = "null"
REPLICAS = 8
WIDTH_SERIES = ((8192, 2048), (16384, 4096), (32768, 8192))
HEIGHT_SERIES = ((8192, 2048), (8192, 8192), (8192, 32768))
WARM_UP = (1024, 1024)
MIB = 2**20
FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssShmem")


def status(pid: int) -> dict[str, int]:
    """The memory fields of /proc/<pid>/status, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS:
            values[name] = int(rest.split()[0]) * 1024
    return values


class Sampler:
    """Samples /proc/<pid>/status in a thread; keeps the maximum of each field."""

    def __init__(self, pid: int, interval_s: float = 0.02):
        self.pid = pid
        self.interval_s = interval_s
        self.peaks = status(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for name, value in status(self.pid).items():
                self.peaks[name] = max(self.peaks[name], value)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for name, value in status(self.pid).items():
            self.peaks[name] = max(self.peaks[name], value)


def job(width: int, height: int, tile: int, max_in_flight: int) -> LargeRenderJob:
    """A tiled-mode PNG job of `width` x `height` on the null model."""
    job_id = f"memory-{width}x{height}"
    return LargeRenderJob(
        job_id=job_id,
        model_name=MODEL,
        prompt="null",
        width=width,
        height=height,
        steps=1,
        guidance=1.0,
        seed=3,
        tile_size=tile,
        native_resolution=tile,
        align=8,
        output_key=f"bench/{job_id}.png",
        mode="tiled",
        max_in_flight=max_in_flight,
    )


def measure(
    size: tuple[int, int], args: argparse.Namespace, store_dir: Path, spool_dir: str
) -> int:
    """Run one size on a fresh router; print its figures and return peak over baseline."""
    storage = {"kind": "local", "path": str(store_dir)}
    router = TileRouter.remote(APP, storage, spool_dir)
    ray.get(router.progress.remote())
    pid = state.actors(router._actor_id.hex())["Pid"]
    idle = status(pid)["VmRSS"]
    warm_up: LargeRenderResult = ray.get(router.run.remote(job(*WARM_UP, args.tile, 32)))
    (store_dir / warm_up.output_key).unlink()
    baseline = status(pid)["VmRSS"]
    started = time.perf_counter()
    with Sampler(pid) as sampler:
        result: LargeRenderResult = ray.get(
            router.run.remote(job(*size, args.tile, args.max_in_flight))
        )
    wall = time.perf_counter() - started
    (store_dir / result.output_key).unlink()
    ray.kill(router)
    peaks = sampler.peaks
    growth = peaks["VmHWM"] - baseline
    print(
        f"  {size[0]:>5}x{size[1]:<5} {result.tiles:>5} tiles {wall:6.1f} s: RSS idle "
        f"{idle / MIB:5.0f} MiB, baseline {baseline / MIB:5.0f} MiB, peak (VmHWM) "
        f"{peaks['VmHWM'] / MIB:6.0f} MiB, peak over baseline {growth / MIB:6.0f} MiB "
        f"(sampled peaks: RssAnon {peaks['RssAnon'] / MIB:.0f} MiB, "
        f"RssShmem {peaks['RssShmem'] / MIB:.0f} MiB)"
    )
    return growth


def series(
    name: str,
    sizes: tuple[tuple[int, int], ...],
    args: argparse.Namespace,
    store_dir: Path,
    spool_dir: str,
    done: dict[tuple[int, int], int],
) -> None:
    print(f"{name} series (tile {args.tile}, max_in_flight {args.max_in_flight}):")
    for size in sizes:
        if size not in done:
            done[size] = measure(size, args, store_dir, spool_dir)
        else:
            print(f"  {size[0]:>5}x{size[1]:<5} (measured above)")
    ratio = done[sizes[-1]] / done[sizes[0]]
    area = sizes[-1][0] * sizes[-1][1] / (sizes[0][0] * sizes[0][1])
    issue_20 = (
        f"; issue 20's <= 1.2: {'met' if ratio <= 1.2 else 'missed'}" if name == "height" else ""
    )
    print(
        f"  {name}: largest / smallest peak over baseline {ratio:.2f} "
        f"(canvas area x{area:.0f}; target <= 1.5: {'met' if ratio <= 1.5 else 'missed'}"
        f"{issue_20})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--max-in-flight", type=int, default=32, help="the router's bound")
    args = parser.parse_args()
    start_ray(gpus=REPLICAS)
    try:
        deploy_null_model(APP, MODEL, REPLICAS, sleep_s=0.0, max_ongoing_requests=4)
        done: dict[tuple[int, int], int] = {}
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            for name, sizes in (("width", WIDTH_SERIES), ("height", HEIGHT_SERIES)):
                series(name, sizes, args, Path(tmp) / "store", f"{tmp}/spool", done)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
