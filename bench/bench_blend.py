"""Blend throughput: RowAssembler megapixels/s against a plain memory copy of the canvas.

Target: the blender reaches >= 0.25 of the copy's throughput. Prints figures,
asserts nothing. Run: .venv/bin/python bench/bench_blend.py [--width W --height H --tile T]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.largeformat.assembler import RowAssembler  # noqa: E402
from core.largeformat.tiling import plan_tiles  # noqa: E402


def _interleaved_best(
    repeats: int, clock: Callable[[], float], *runs: Callable[[], object]
) -> list[float]:
    """Best time of each run over `repeats` rounds, alternating them so load is shared."""
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = clock()
            run()
            best[i] = min(best[i], clock() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--height", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--blend", choices=("feather", "multiband"), default="feather")
    args = parser.parse_args()

    plan = plan_tiles(args.width, args.height, args.tile)
    source = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), np.uint8)
    tiles = [(t, source[t.y : t.y + t.h, t.x : t.x + t.w].copy()) for t in plan.tiles]
    megapixels = args.width * args.height / 1e6

    def blend() -> None:
        assembler = RowAssembler(plan, blend=args.blend)
        for tile, pixels in tiles:
            assembler.add(tile, pixels)

    target = np.empty_like(source)
    print(
        f"canvas {args.width}x{args.height}, {len(plan.tiles)} tiles of {args.tile} px, "
        f"overlap {plan.overlap}, redundancy {plan.redundancy:.3f}, blend {args.blend}"
    )
    # wall time, and CPU time of this process (steadier on a shared machine)
    for name, clock in (("wall", time.perf_counter), ("cpu", time.process_time)):
        copy_s, blend_s = _interleaved_best(
            args.repeats, clock, lambda: np.copyto(target, source), blend
        )
        print(
            f"{name:4s}  copy {megapixels / copy_s:7.0f} MP/s ({copy_s * 1e3:5.1f} ms)  "
            f"blend {megapixels / blend_s:6.0f} MP/s ({blend_s * 1e3:6.1f} ms)  "
            f"ratio {copy_s / blend_s:.3f} (target >= 0.25)"
        )


if __name__ == "__main__":
    main()
