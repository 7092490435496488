"""Hosted models: is the bound held across replicas, and what does sharing it cost?

    .venv/bin/python bench/bench_remote_limits.py [--calls 40] [--latency 0.2]
                                                  [--replicas 2] [--bound 2] [--ray]

1. Without Ray: `--replicas` callers (one per "replica") render `--calls` images on
   the local provider double (each call answered after `--latency` s), all at once:
   - per-replica bound: each caller has its own limiter of `--bound` (what a bound
     kept inside each replica gives);
   - shared bound: one limiter for all (what `actors.remote_limiter` gives).
   Printed: the most calls the provider saw in flight, the wall time, and the
   ratio of the wall time to the ideal ``calls / bound x latency``.
2. With `--ray`: the round trip of one lease (acquire + release) on the limiter
   actor, median of 200, next to the provider latency it guards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.remote.caller import RemoteCaller  # noqa: E402
from core.remote.config import RemoteConfig  # noqa: E402
from core.remote.http import HttpTransport  # noqa: E402
from core.remote.limits import AsyncLimiter, LimiterState  # noqa: E402
from core.remote.providers import adapter_for  # noqa: E402
from core.schemas import GenerateRequest  # noqa: E402
from tests.remote_double import KEY, ProviderDouble  # noqa: E402


async def campaign(double: ProviderDouble, args: argparse.Namespace, shared: bool) -> float:
    remote = RemoteConfig(
        provider="ideogram", model="V_2", base_url=double.base_url("ideogram"),
        max_concurrency=args.bound, requests_per_minute=100_000,
    )  # fmt: skip
    one = AsyncLimiter(LimiterState(args.bound, 100_000))
    callers, transports = [], []
    for _ in range(args.replicas):
        limiter = one if shared else AsyncLimiter(LimiterState(args.bound, 100_000))
        http = HttpTransport()
        transports.append(http)
        callers.append(
            RemoteCaller("bench", remote, adapter_for("ideogram"), http.send, http.fetch,
                         limiter, key=lambda: KEY)
        )  # fmt: skip
    request = GenerateRequest("poster", 320, 240, steps=1, guidance=1.0, seed=1)
    started = time.perf_counter()
    await asyncio.gather(*(callers[i % len(callers)].render(request) for i in range(args.calls)))
    elapsed = time.perf_counter() - started
    for http in transports:
        await http.aclose()
    return elapsed


def without_ray(args: argparse.Namespace) -> None:
    double = ProviderDouble(latency_s=args.latency).start()
    try:
        ideal = args.calls / args.bound * args.latency
        for shared in (False, True):
            double.reset()
            elapsed = asyncio.run(campaign(double, args, shared))
            label = "shared bound     " if shared else "per-replica bound"
            print(
                f"{label}: {args.replicas} replicas x bound {args.bound}: provider saw at most "
                f"{double.max_in_flight['ideogram']} in flight; {args.calls} calls in "
                f"{elapsed:.2f}s (ideal at the bound {ideal:.2f}s, ratio {ideal / elapsed:.2f})"
            )
    finally:
        double.stop()


def with_ray(args: argparse.Namespace) -> None:
    import ray

    from actors.remote_limiter import SharedLimiter

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = RemoteConfig(
            provider="ideogram",
            model="V_2",
            max_concurrency=args.bound,
            requests_per_minute=100_000,
        )
        limiter = SharedLimiter("bench", "ideo", remote)

        async def round_trips() -> list[float]:
            await limiter.start()
            times = []
            for _ in range(200):
                started = time.perf_counter()
                await limiter.release(await limiter.acquire())
                times.append(time.perf_counter() - started)
            return times

        times = asyncio.run(round_trips())
        median = statistics.median(times)
        print(
            f"lease round trip on the limiter actor: median {median * 1000:.2f} ms, "
            f"p95 {sorted(times)[190] * 1000:.2f} ms ({median / args.latency:.1%} of a "
            f"{args.latency:g}s provider call)"
        )
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--bound", type=int, default=2)
    parser.add_argument("--ray", action="store_true", help="also time the limiter actor")
    args = parser.parse_args()
    without_ray(args)
    if args.ray:
        with_ray(args)


if __name__ == "__main__":
    main()
