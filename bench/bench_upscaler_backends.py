"""The torch and ncnn upscaler backends on the demo photo: agreement (PSNR) and time.

Every Real-ESRGAN variant upscales `skimage.data.astronaut()` (512x512, as
`rendercluster demo` uses) once with ncnn on the CPU and once with torch (on
CUDA when there is a GPU, else the CPU); prints the PSNR between the two
results (target: >= 45 dB), their largest difference in levels and both
times. No Ray. Prints figures, asserts nothing.
Run: nice -n 19 .venv/bin/python bench/bench_upscaler_backends.py [--threads 2] [--side 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skimage.data import astronaut

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.upscaler_variants import REALESRGAN_VARIANTS  # noqa: E402
from serve.upscaler import Upscaler, load_upscaler  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def timed(engine: Upscaler, photo: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = engine.upscale(photo)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each backend")
    parser.add_argument("--side", type=int, default=512, help="upscale the top-left side x side")
    args = parser.parse_args()
    photo = np.ascontiguousarray(astronaut()[: args.side, : args.side])
    for variant, spec in REALESRGAN_VARIANTS.items():
        source = f"realesrgan:{variant}"
        ncnn_engine = load_upscaler(source, spec.scale, threads=args.threads, backend="ncnn")
        torch_engine = load_upscaler(source, spec.scale, threads=args.threads, backend="torch")
        expected, ncnn_s = timed(ncnn_engine, photo)
        got, torch_s = timed(torch_engine, photo)
        diff = int(np.abs(got.astype(np.int16) - expected).max())
        print(
            f"{variant:16s} {photo.shape[1]}x{photo.shape[0]} -> {got.shape[1]}x{got.shape[0]}  "
            f"PSNR {psnr(got, expected):6.2f} dB  max diff {diff}  "
            f"ncnn {ncnn_s:6.1f} s  torch ({torch_engine.device}) {torch_s:6.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
