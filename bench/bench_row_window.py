"""How far ahead of a slow tile the router sends tiles: job time against memory. No Ray.

    .venv/bin/python bench/bench_row_window.py [--width 8192] [--height 8192] [--tile 512]
                                               [--in-flight 32] [--tile-s 0.2] [--repeats 2]

Tiles that came back wait in the router until every row above them is done, so a
slow tile holds back the blending of the whole canvas below it. The router sends no
tile more than `rows_ahead` tile rows below the first row with a tile still out
(`core.largeformat.fanout`): the rows its tiles in flight fill plus `slack_rows`.
This runs the real fan-out loop (`gather_to_file`: assembler, seam meter, a TIFF
written to a temporary directory) with tiles that take `--tile-s` (+-20 %, seeded)
and, in the second half, 1 % of tiles taking 10x as long. Per slack, and with no
bound: the tiles phase's time over the ideal (tiles x mean time / in flight) and the
most MiB of tiles held at once. Medians of `--repeats`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.largeformat.fanout import Fanout, JobProgress, OutputFile, gather_to_file  # noqa: E402
from core.largeformat.tiling import Tile, plan_tiles  # noqa: E402

SLACKS = (1, 2, 3, 4, None)  # None: no bound on how far ahead tiles go
UNBOUNDED = 10**6
MIB = 2**20


def run(args: argparse.Namespace, slack: int | None, slow_share: float, seed: int) -> tuple:
    """One job; returns (tiles time / ideal, peak held MiB)."""
    plan = plan_tiles(args.width, args.height, args.tile, 32, 8)
    rng = random.Random(seed)
    durations = [
        args.tile_s * rng.uniform(0.8, 1.2) * (10 if rng.random() < slow_share else 1)
        for _ in plan.tiles
    ]

    async def render_tile(tile: Tile) -> np.ndarray:
        await asyncio.sleep(durations[tile.index])
        return np.full((tile.h, tile.w, 3), 128, np.uint8)

    fanout = Fanout(args.in_flight, slack_rows=UNBOUNDED if slack is None else slack)
    with tempfile.TemporaryDirectory(prefix="bench-row-window-") as tmp:
        output = OutputFile(Path(tmp) / "canvas.tiff", "tiff")
        result = asyncio.run(gather_to_file(plan, render_tile, output, fanout, JobProgress()))
    ideal = sum(durations) / args.in_flight
    return result.tiles_s / ideal, result.peak_held_bytes / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--height", type=int, default=8192)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--tile-s", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    plan = plan_tiles(args.width, args.height, args.tile, 32, 8)
    print(
        f"{args.width}x{args.height}: {len(plan.tiles)} tiles of {args.tile} px, "
        f"{plan.cols} per row, {args.in_flight} in flight, {args.tile_s * 1000:.0f} ms a tile"
    )
    for slow_share in (0.0, 0.01):
        print(f"tiles 10x slower: {slow_share:.0%}")
        for slack in SLACKS:
            runs = [run(args, slack, slow_share, seed) for seed in range(args.repeats)]
            time_ratio = statistics.median(r[0] for r in runs)
            held = statistics.median(r[1] for r in runs)
            label = "no bound" if slack is None else f"slack {slack} rows"
            print(f"  {label:>13}: tiles time / ideal {time_ratio:.2f}, peak held {held:5.0f} MiB")


if __name__ == "__main__":
    main()
