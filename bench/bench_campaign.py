"""Campaign throughput on a null model: renders per second against the ideal (issue 6).

A campaign of `--items` x `--variants` single renders goes through the real
campaign machinery: `start_runner` (what `POST /v1/campaigns` calls once the
manifest is valid) starts the detached `CampaignRunner` actor, whose
`CampaignLoop` claims each job in the ledger, keeps at most its bound of
renders in flight (`max_in_flight` capped by the Serve capacity, replicas x
`max_ongoing_requests`), renders through `ServeJobRenderer` (the model's Serve
handle), stores the PNG and the run record, marks the job done, saves progress
every second and writes the report at the end.

Only the model deployment is replaced: `null_model.NullModel` is deployed as
`deployment_name("quality")` in app `bench-campaign`, 8 replicas of 1 logical
GPU each, holding its "GPU" for `--sleep` seconds per render, one render at a
time. Neither the HTTP ingress nor the rest of the app is deployed: the ingress
only validates the manifest and calls `start_runner`, and the runner reaches
the model by deployment name, never through the ingress, so it adds nothing to
the render path. The config is `configs/local.yaml` with the store in a
temporary directory; the model's `max_ongoing_requests` (config and deployment
alike, so that the runner's capacity matches what Serve enforces) is the
config's unless `--max-ongoing` says otherwise.

Ideal renders/s = replicas / sleep. Ratios of measured / ideal are printed for
the render phase (the runner's loop start to the last job marked done: the
scheduling overhead) and end to end (`start_runner` called until the status
says finished: actor start, planning and the report included). Target: render
phase >= 0.85. Also the mean per-render `compute_s` (on the replica) and
`total_s` (in `render_job`, while the render holds one of the bound's slots)
from the run records: with `max_ongoing_requests` 1 the bound equals the
replicas, and the difference is time each replica sits idle per render.
Prints figures, asserts nothing; starts and stops its own Ray (2 CPUs, 8
logical GPUs); the store lives in a temporary directory.

Run: .venv/bin/python bench/bench_campaign.py [--items 320 --variants 4 --sleep 0.25
     --size 256 --max-ongoing N --max-in-flight 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import ray
from ray import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.campaign_runner import start_runner  # noqa: E402
from bench.null_model import deploy_null_model, start_ray  # noqa: E402
from core.campaign import Ledger, Manifest, load_ledger, load_status, manifest_from_data  # noqa: E402
from core.campaign.loop import DEFAULT_MAX_IN_FLIGHT, RunnerStats, load_stats  # noqa: E402
from core.campaign.plan import plan_campaign  # noqa: E402
from core.campaign.progress import CampaignProgress  # noqa: E402
from core.config import ClusterConfig  # noqa: E402
from core.config_file import load_config  # noqa: E402
from core.errors import NotFoundError  # noqa: E402
from core.records import RunRegistry  # noqa: E402
from core.store import ArtifactStore, open_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = "bench-campaign"
CAMPAIGN = "bench-campaign"
MODEL = "quality"
REPLICAS = 8
TARGET = 0.85


@dataclass(frozen=True)
class Outcome:
    """What one campaign run took, read back from the store."""

    wall_s: float  # start_runner called -> status finished
    start_s: float  # start_runner called -> loop started (actor start, planning, ledger scan)
    render_s: float  # loop started -> last job marked done
    done: int
    failed: int
    stats: RunnerStats
    compute_s: float  # mean over the run records: the null model's time per render
    total_s: float  # mean over the run records: `render_job`'s time per render (a slot held)


def bench_config(store: Path, max_ongoing: int | None) -> ClusterConfig:
    """`configs/local.yaml` with the store in `store` and the model's request limit set."""
    base = load_config(REPO / "configs" / "local.yaml")
    model = base.models[MODEL]
    if max_ongoing is not None:
        model = model.model_copy(update={"max_ongoing_requests": max_ongoing})
    return base.model_copy(
        update={
            "storage": base.storage.model_copy(update={"path": store}),
            "models": {**base.models, MODEL: model},
        }
    )


def bench_manifest(items: int, variants: int, size: int) -> Manifest:
    """`items` prompts, each rendered `variants` times at `size` x `size` on the model."""
    return manifest_from_data(
        {
            "campaign": CAMPAIGN,
            "defaults": {"model": MODEL, "sizes": [f"{size}x{size}"], "variants": variants},
            "items": [{"id": f"item-{n:04d}", "prompt": f"null render {n}"} for n in range(items)],
        },
        source="bench manifest",
    )


def wait_finished(store: ArtifactStore, timeout_s: float) -> CampaignProgress:
    """Poll the campaign's status until it is no longer running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            progress = load_status(store, CAMPAIGN)
        except NotFoundError:  # the runner has not saved its first status yet
            progress = None
        if progress is not None and progress.state != "running":
            return progress
        time.sleep(0.05)
    raise TimeoutError(f"campaign {CAMPAIGN} not finished after {timeout_s:.0f} s")


def mean_timings(store: ArtifactStore, ledger: Ledger) -> dict[str, float]:
    """Mean `compute_s` and `total_s` of the done jobs' run records (read as plain JSON)."""
    registry = RunRegistry(store)
    timings = [
        json.loads(store.get_bytes(registry.key(entry.run_id)))["timings"]
        for entry in ledger.done.values()
    ]
    return {name: statistics.fmean(t[name] for t in timings) for name in ("compute_s", "total_s")}


def run_campaign(
    config: ClusterConfig, manifest: Manifest, max_in_flight: int, timeout_s: float
) -> Outcome:
    """Start the campaign's runner, wait for the end, read its numbers from the store."""
    store = open_store(config.storage)
    called_at = datetime.now(UTC)
    started = time.perf_counter()
    start_runner(config, manifest, APP, max_in_flight=max_in_flight)
    progress = wait_finished(store, timeout_s)
    wall_s = time.perf_counter() - started
    stats = load_stats(store, CAMPAIGN)
    assert stats is not None  # saved before the status says finished
    ledger = load_ledger(store, CAMPAIGN)
    last_done = max(entry.finished_at for entry in ledger.done.values())
    return Outcome(
        wall_s=wall_s,
        start_s=(progress.started_at - called_at).total_seconds(),
        render_s=(last_done - progress.started_at).total_seconds(),
        done=progress.done,
        failed=progress.failed,
        stats=stats,
        **mean_timings(store, ledger),
    )


def report(args: argparse.Namespace, config: ClusterConfig, jobs: int, outcome: Outcome) -> None:
    """Print the figures and the ratios against the ideal."""
    max_ongoing = config.models[MODEL].max_ongoing_requests
    ideal = REPLICAS / args.sleep
    stats = outcome.stats
    print(
        f"campaign: {jobs} renders ({args.items} items x {args.variants} variants, "
        f"{args.size}x{args.size} png) on model {MODEL!r} served by NullModel"
    )
    print(
        f"replicas: {REPLICAS} (1 logical GPU each, max_ongoing_requests {max_ongoing}); "
        f"per-render sleep {args.sleep:.3f} s"
    )
    print(
        f"per render (run records, mean): compute {outcome.compute_s:.3f} s on the replica, "
        f"{outcome.total_s:.3f} s in render_job (the slot held: queue at the replica, "
        "transfers, PNG encode and store put)"
    )
    print(
        f"runner: bound {stats.bound_max} (max_in_flight {args.max_in_flight}, capacity "
        f"{REPLICAS} x {max_ongoing} = {REPLICAS * max_ongoing}), most in flight "
        f"{stats.max_in_flight_observed}, done {outcome.done}, failed {outcome.failed}, "
        f"503 retries {stats.overloaded_retries}, failed attempts {stats.failed_attempts}"
    )
    print(f"ideal: {ideal:.2f} renders/s (replicas / sleep); target ratio >= {TARGET:.2f}")
    for label, seconds in (("render phase", outcome.render_s), ("end to end", outcome.wall_s)):
        rate = outcome.done / seconds
        print(f"{label:12}  wall {seconds:6.2f} s  {rate:6.2f} renders/s  ratio {rate / ideal:.3f}")
    tail_s = outcome.wall_s - outcome.start_s - outcome.render_s
    print(
        f"end to end = runner start and planning {outcome.start_s:.2f} s + render phase "
        f"+ report and final status {tail_s:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=320)
    parser.add_argument("--variants", type=int, default=4, help="renders per item")
    parser.add_argument("--sleep", type=float, default=0.25, help="null model seconds per render")
    parser.add_argument("--size", type=int, default=256, help="side of each render, px")
    parser.add_argument(
        "--max-ongoing", type=int, default=None, help="per-replica request limit (config's)"
    )
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT)
    args = parser.parse_args()
    start_ray(gpus=REPLICAS)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
            config = bench_config(Path(tmp) / "store", args.max_ongoing)
            manifest = bench_manifest(args.items, args.variants, args.size)
            jobs = len(plan_campaign(manifest, config))  # the route's check, before the runner
            deploy_null_model(
                APP, MODEL, REPLICAS, args.sleep, config.models[MODEL].max_ongoing_requests
            )
            timeout_s = 60 + 10 * jobs * args.sleep / REPLICAS
            outcome = run_campaign(config, manifest, args.max_in_flight, timeout_s)
            report(args, config, jobs, outcome)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
