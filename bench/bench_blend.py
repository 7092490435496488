"""Blend throughput: RowAssembler megapixels/s against a plain memory copy of the canvas.

Target: the blender reaches >= 0.25 of the copy's throughput. Also the two-tile
mix of one overlap piece side by side: numpy's six passes against the compiled
kernel the assembler uses (`core.largeformat.mixing`). Prints figures, asserts
nothing. Run: .venv/bin/python bench/bench_blend.py [--width W --height H --tile T]
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
from core.largeformat.mixing import mix_columns  # noqa: E402
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
    compare_mixers(args.tile, plan.overlap, args.repeats)


def _numpy_mix(a: np.ndarray, b: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """The pair mix in numpy (uint16 fixed point): what the kernel replaced."""
    total = np.multiply(a, weights, dtype=np.uint16)
    total += np.multiply(b, 256 - weights, dtype=np.uint16)
    total += 128
    total >>= 8
    np.copyto(out, total, casting="unsafe")


def compare_mixers(tile: int, overlap: int, repeats: int) -> None:
    """Time one overlap piece (tile x overlap px) mixed by numpy and by the kernel."""
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (tile, overlap * 3), np.uint8) for _ in range(2))
    weights = rng.integers(0, 257, overlap * 3).astype(np.uint16)
    outs = [np.empty_like(a), np.empty_like(a)]
    mix_columns(a, b, weights, outs[1])  # compiled (or loaded from the cache) before timing
    calls = 200

    def run(mixer: Callable, out: np.ndarray) -> Callable[[], None]:
        return lambda: [mixer(a, b, weights, out) for _ in range(calls)]

    numpy_s, kernel_s = _interleaved_best(
        repeats, time.perf_counter, run(_numpy_mix, outs[0]), run(mix_columns, outs[1])
    )
    print(
        f"pair mix of a {tile}x{overlap} px overlap: numpy {numpy_s / calls * 1e6:.1f} us, "
        f"numba kernel {kernel_s / calls * 1e6:.1f} us, numpy / kernel {numpy_s / kernel_s:.1f}x, "
        f"same bytes: {np.array_equal(*outs)}"
    )


if __name__ == "__main__":
    main()
