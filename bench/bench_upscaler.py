"""Upscaler speed and tile quality: Real-ESRGAN animevideov3 x4 with ncnn on this CPU.

Prints seconds per output megapixel for a whole-image pass on 1 and 2 ncnn
threads and for the tiled pass (context padding, blended by `RowAssembler`),
and the PSNR against the whole-image result of tiles with and without context
padding. Asserts nothing. Run: .venv/bin/python bench/bench_upscaler.py
[--width W --height H --tile T --padding P --repeats N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.assembler import RowAssembler  # noqa: E402
from core.upscaling import plan_upscale  # noqa: E402
from serve.upscaler import UpscalerEngine, load_upscaler  # noqa: E402
from tests.unit.test_upscaler import psnr, scene  # noqa: E402

SOURCE = "realesrgan:animevideov3-x4"
SCALE = 4


def tiled(
    engine: UpscalerEngine, image: np.ndarray, tile: int, padding: int, overlap: int | None = None
) -> np.ndarray:
    """Upscale tile by tile and blend; returns the upscaled image."""
    plan = plan_upscale(image.shape[1], image.shape[0], SCALE, tile, padding, overlap)
    assembler = RowAssembler(plan.canvas)
    bands = []
    for padded, target in zip(plan.tiles, plan.canvas.tiles, strict=True):
        request = padded.request(image)
        bands += assembler.add(target, engine.upscale(request.image, request.crop))
    return np.concatenate([band for _, band in bands])


def best_times(repeats: int, runs: list[Callable[[], object]]) -> list[float]:
    """Best wall time of each run, alternating them so that machine load is shared."""
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--tile", type=int, default=96)
    parser.add_argument("--padding", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    image = scene(args.width, args.height)
    one, two = (load_upscaler(SOURCE, SCALE, threads=n) for n in (1, 2))
    megapixels = args.width * args.height * SCALE**2 / 1e6
    whole = one.upscale(image)  # also warms up
    two.upscale(image)
    times = best_times(
        args.repeats,
        [
            lambda: one.upscale(image),
            lambda: two.upscale(image),
            lambda: tiled(one, image, args.tile, args.padding),
        ],
    )
    plan = plan_upscale(args.width, args.height, SCALE, args.tile, args.padding)
    print(
        f"{SOURCE}: {args.width}x{args.height} -> {args.width * SCALE}x{args.height * SCALE} "
        f"({megapixels:.2f} MP out); {len(plan.tiles)} tiles of {args.tile} px, overlap "
        f"{plan.source.overlap}, padding {args.padding}; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores"
    )
    labels = ("whole, 1 thread", "whole, 2 threads", "tiled, 1 thread")
    for label, seconds in zip(labels, times, strict=True):
        print(f"{label:18} {seconds / megapixels:6.2f} s/MP  ({seconds:.2f} s)")
    for label, padding, overlap in (
        ("padded tiles", args.padding, None),
        ("unpadded tiles", 0, None),
        ("naive tiles", 0, 0),
    ):
        result = tiled(one, image, args.tile, padding, overlap)
        print(f"{label:18} PSNR {psnr(result, whole):6.1f} dB vs the whole-image result")


if __name__ == "__main__":
    main()
