"""Model-seconds per image at concurrency 1 and 8, with and without `fixed_batch_shape`.

Issue 15: with padding on, a lone request renders max_batch_size rows (4 images'
compute for one); off (the default), it renders one. The engine is the one a
replica runs (`serve.engine.RenderEngine`, tiny model, no Ray); concurrency 8 is
eight requests of one shape arriving together, which Serve's batching hands to
the engine as batches of max_batch_size. Model-seconds per image: the engine's
compute time summed over batches, divided by the images returned. Rounds
alternate the settings so machine load is shared. Prints figures, asserts nothing.
Run: .venv/bin/python bench/bench_batching.py [--size 128 --steps 4 --rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import ModelConfig  # noqa: E402
from core.schemas import GenerateRequest  # noqa: E402
from serve.engine import RenderEngine  # noqa: E402
from serve.loader import load_model  # noqa: E402

MAX_BATCH_SIZE = 4


def model_seconds_per_image(engine: RenderEngine, requests: list[GenerateRequest], at_once: int):
    """Render `requests` in arrivals of `at_once`; compute seconds per image returned."""
    spent = 0.0
    for start in range(0, len(requests), at_once):
        started = time.perf_counter()
        engine.render(requests[start : start + at_once])
        spent += time.perf_counter() - started
    return spent / len(requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        model = load_model(ModelConfig(source="tiny:0"), Path(cache))
    engines = {
        fixed: RenderEngine(model, max_batch_size=MAX_BATCH_SIZE, fixed_batch_shape=fixed)
        for fixed in (False, True)
    }
    requests = [
        GenerateRequest(f"scene {i}", args.size, args.size, args.steps, 5.0, seed=i)
        for i in range(8)
    ]
    best: dict[tuple[bool, int], float] = {}
    for _ in range(args.rounds):
        for fixed, engine in engines.items():
            for concurrency in (1, 8):
                figure = model_seconds_per_image(engine, requests, concurrency)
                key = (fixed, concurrency)
                best[key] = min(best.get(key, float("inf")), figure)
    print(
        f"tiny model, {args.size}x{args.size}, {args.steps} steps, max_batch_size "
        f"{MAX_BATCH_SIZE}, best of {args.rounds} rounds"
    )
    for fixed in (False, True):
        label = "fixed_batch_shape on " if fixed else "fixed_batch_shape off"
        one, eight = best[(fixed, 1)], best[(fixed, 8)]
        print(
            f"{label}: model-seconds per image {one:.3f} at concurrency 1, "
            f"{eight:.3f} at concurrency 8"
        )
    ratio = best[(True, 1)] / best[(False, 1)]
    print(f"a lone request with padding on costs {ratio:.2f}x its cost with padding off")


if __name__ == "__main__":
    main()
