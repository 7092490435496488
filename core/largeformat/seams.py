"""Seam metric: how much stronger the image changes across seams than inside tiles.

Seam lines are the centre lines of the overlap bands (the tile border itself
where tiles only abut): there a feathered colour difference changes fastest,
and a hard cut between two tiles lies there too. Reference lines are the
centre lines of each tile's own span between its seams. Both are measured the
same way: the mean absolute difference between the two pixel lines either
side, over the whole canvas length and all channels. The score is the seam
measure divided by the reference measure: about 1.0 when seams are invisible,
clearly above 1 when tiles differ. A plan with a single tile scores 1.0.

`SeamMeter` takes the image in row bands, so the router can score a canvas it
never holds whole; `seam_score` scores a whole image.
"""

from __future__ import annotations

import numpy as np

from core.largeformat.tiling import TilePlan

__all__ = ["SeamMeter", "seam_score"]

# Added to both measures so that a flat image scores 1.0 rather than 0/0.
_EPSILON = 1e-3


class SeamMeter:
    """Accumulates the seam score of a canvas fed top to bottom in row bands."""

    def __init__(self, plan: TilePlan):
        self._plan = plan
        vertical = _seam_lines(plan.xs, plan.widths)
        horizontal = _seam_lines(plan.ys, plan.heights)
        self._v_seams = np.array(vertical, np.intp)
        self._v_refs = np.array(_reference_lines(vertical, plan.width), np.intp)
        self._h_seams = tuple(horizontal)
        self._h_refs = tuple(_reference_lines(horizontal, plan.height))
        self._sums = np.zeros(2)  # seam, reference
        self._counts = np.zeros(2)
        self._next_y = 0
        self._last_row: np.ndarray | None = None

    def add_rows(self, y0: int, rows: np.ndarray) -> None:
        """Feed canvas rows [y0, y0 + len(rows)), (n, width[, C]), in order."""
        if y0 != self._next_y or rows.shape[1] != self._plan.width:
            raise ValueError(
                f"expected rows from y={self._next_y} of width {self._plan.width}, "
                f"got y={y0} with shape {rows.shape}"
            )
        for slot, lines in enumerate((self._v_seams, self._v_refs)):
            if lines.size:
                diffs = np.abs(_f32(rows[:, lines]) - _f32(rows[:, lines - 1]))
                self._sums[slot] += diffs.sum()
                self._counts[slot] += diffs.size
        for slot, lines in enumerate((self._h_seams, self._h_refs)):
            for y in lines:
                if y0 <= y < y0 + len(rows):
                    above = _f32(rows[y - y0 - 1]) if y > y0 else self._last_row
                    diffs = np.abs(_f32(rows[y - y0]) - above)
                    self._sums[slot] += diffs.sum()
                    self._counts[slot] += diffs.size
        self._last_row = _f32(rows[-1])
        self._next_y = y0 + len(rows)

    @property
    def score(self) -> float:
        """Seam measure / reference measure over the rows fed so far (1.0 with no seams)."""
        if not self._counts[0] or not self._counts[1]:
            return 1.0
        seam, reference = self._sums / self._counts
        return float((seam + _EPSILON) / (reference + _EPSILON))


def seam_score(image: np.ndarray, plan: TilePlan) -> float:
    """The seam score of a whole (height, width[, C]) image rendered with `plan`."""
    if image.shape[:2] != (plan.height, plan.width):
        raise ValueError(
            f"image is {image.shape[1]}x{image.shape[0]}, the plan {plan.width}x{plan.height}"
        )
    meter = SeamMeter(plan)
    meter.add_rows(0, image)
    return meter.score


def _f32(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32)


def _seam_lines(origins: tuple[int, ...], sizes: tuple[int, ...]) -> list[int]:
    """The centre of each overlap: the first pixel line after the seam."""
    return [
        (nxt + prev + size) // 2
        for prev, nxt, size in zip(origins, origins[1:], sizes, strict=False)
    ]


def _reference_lines(seams: list[int], length: int) -> list[int]:
    """The centre of each tile's own span between seams (and the canvas edges)."""
    bounds = [0, *seams, length]
    centres = [(a + b) // 2 for a, b in zip(bounds, bounds[1:], strict=False)]
    return [c for c in centres if c >= 1] if seams else []
