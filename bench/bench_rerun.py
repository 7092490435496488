"""What a re-run from the final stage costs against a full pipeline run.

Starts the embedded cluster from a config, then for each of --repeats seeds runs
the whole pipeline (every stage a cache miss, approval gates approved at once)
and re-runs it from --stage with one parameter changed (earlier stages are cache
hits; that stage and the ones after it are recomputed). Prints the median wall
times and their ratio, and the per-stage times of the last run. Asserts nothing.

Run: .venv/bin/python bench/bench_rerun.py [--config configs/local.yaml] [--pipeline standard]
     [--stage final] [--repeats 3] [--first N]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.pipeline_runner import PipelineRunner  # noqa: E402
from actors.pipeline_state import PipelineRequest  # noqa: E402
from actors.stage_renderers import ServeStageRenderer  # noqa: E402
from core.config import APP_NAME, StorageConfig  # noqa: E402
from core.config_file import load_config  # noqa: E402
from core.records import RunRecord  # noqa: E402
from core.store import open_store  # noqa: E402
from serve.local_cluster import start_local_cluster  # noqa: E402


async def _to_the_end(runner: PipelineRunner, record: RunRecord) -> RunRecord:
    """Approve every gate until the run is over; fail loudly if it did not finish."""
    while record.status == "awaiting_approval":
        record = await runner.approve(record.id)
    if record.status != "done":
        raise RuntimeError(f"run {record.id} ended {record.status}: {record.error}")
    return record


async def _measure(runner: PipelineRunner, args: argparse.Namespace, seed: int):
    request = PipelineRequest(prompt="a lighthouse poster, bold headline", seed=seed)
    started = time.perf_counter()
    full = await _to_the_end(runner, await runner.run(args.pipeline, request))
    full_s = time.perf_counter() - started
    started = time.perf_counter()
    rerun = await runner.rerun(full.id, args.stage, {"steps": args.rerun_steps})
    rerun = await _to_the_end(runner, rerun)
    return full_s, time.perf_counter() - started, full, rerun


def _stage_times(runner: PipelineRunner, record: RunRecord) -> str:
    return ", ".join(
        f"{s.stage} {s.timings['total_s']:.2f}s ({s.cache})"
        for s in runner.stage_records(record.id)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _report(runner: PipelineRunner, args: argparse.Namespace, results: list) -> None:
    full_s = statistics.median(r[0] for r in results)
    rerun_s = statistics.median(r[1] for r in results)
    stages = [s.name for s in runner.config.pipelines[args.pipeline].stages]
    print(f"pipeline {args.pipeline!r} ({' -> '.join(stages)}), {args.repeats} seeds, median:")
    print(f"  full run (every stage a miss)  {full_s:7.2f} s")
    print(f"  re-run from {args.stage!r}, steps={args.rerun_steps}  {rerun_s:7.2f} s")
    print(f"  re-run / full                  {rerun_s / full_s:7.2f}")
    _, _, full, rerun = results[-1]
    print(f"  last full run: {_stage_times(runner, full)}")
    print(f"  last re-run:   {_stage_times(runner, rerun)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--pipeline", default="standard")
    parser.add_argument("--stage", default="final", help="stage to re-run from")
    parser.add_argument("--rerun-steps", type=int, default=3, help="steps set on the re-run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first", type=int, help="run only the pipeline's first N stages")
    parser.add_argument("--gpus", type=int, default=4, help="logical GPUs of the local Ray")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        config = load_config(args.config)
        pipeline = config.pipelines[args.pipeline]
        if args.first:
            pipeline = pipeline.model_copy(update={"stages": pipeline.stages[: args.first]})
        config = config.model_copy(
            update={"model_cache_dir": Path(tmp), "pipelines": {args.pipeline: pipeline}}
        )
        cluster = start_local_cluster(config, gpus=args.gpus, port=_free_port())
        storage = StorageConfig(kind="local", path=Path(tmp) / "store")
        runner = PipelineRunner(config, open_store(storage), ServeStageRenderer(storage, APP_NAME))
        try:
            asyncio.run(_measure(runner, args, seed=10_000))  # warm every replica up
            results = [asyncio.run(_measure(runner, args, seed)) for seed in range(args.repeats)]
            _report(runner, args, results)
        finally:
            cluster.shutdown()


if __name__ == "__main__":
    main()
