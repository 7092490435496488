"""A downscaled preview of a large render's finished rows, kept in the store. No Ray.

`RowPreview` is the pure part: it takes the row bands a `StreamingImageWriter`
receives (top to bottom) and averages them into a canvas at most `max_px` wide and
high (over a sample of each block for large canvases); rows not finished yet stay
blank. `JobPreview` publishes one job's preview to the store as
``job-previews/<job id>.png`` with a JSON note beside it (``.json``: its owner, the
rows done, the size), from a thread of its own at most every `interval_s` seconds,
and at once when the canvas is complete. A preview is a courtesy: its failures are
logged and never fail the job.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from core.store import ArtifactStore

__all__ = [
    "BLANK",
    "JobPreview",
    "PREVIEW_PREFIX",
    "PREVIEW_PX",
    "RowPreview",
    "RowSink",
    "preview_keys",
]

PREVIEW_PX = 512
SAMPLES = 4  # a preview pixel averages at least this many canvas pixels per side
PREVIEW_PREFIX = "job-previews/"
BLANK = (233, 236, 241)  # what a row not finished yet shows
_IDLE_S = 30.0  # a writer thread with nothing to write for this long ends
RowSink = Callable[[int, np.ndarray], None]
"""Receives a band of finished rows: (first canvas row, uint8 rows (n, width, bands))."""

logger = logging.getLogger(__name__)


def preview_keys(job_id: str) -> tuple[str, str]:
    """The store keys of a job's preview image and of its JSON note."""
    return f"{PREVIEW_PREFIX}{job_id}.png", f"{PREVIEW_PREFIX}{job_id}.json"


def _edges(full: int, small: int) -> np.ndarray:
    """`small + 1` bin edges over `full` pixels (every bin at least one pixel wide)."""
    return (np.arange(small + 1, dtype=np.int64) * full) // small


class RowPreview:
    """The preview of a `width` x `height` canvas, filled as rows arrive.

    Each preview pixel is the mean of its block of the canvas; where a block is wider
    (or taller) than `SAMPLES` pixels, of every k-th column (row) of it only, at least
    `SAMPLES` per side, so that a billboard's band costs about as much as a small one.
    """

    def __init__(self, width: int, height: int, max_px: int = PREVIEW_PX):
        if width < 1 or height < 1 or max_px < 1:
            raise ValueError(f"need a positive size, got {width}x{height} into {max_px} px")
        scale = min(1.0, max_px / width, max_px / height)
        self.width, self.height = width, height
        self.size = (max(1, round(width * scale)), max(1, round(height * scale)))  # (w, h)
        pw, ph = self.size
        self._x_edges, self._y_edges = _edges(width, pw), _edges(height, ph)
        self._kx, self._ky = max(1, width // pw // SAMPLES), max(1, height // ph // SAMPLES)
        sampled_x = np.arange(0, width, self._kx)
        self._x_starts = np.searchsorted(sampled_x, self._x_edges[:-1])
        self._x_counts = np.diff(np.searchsorted(sampled_x, self._x_edges))
        self._sums = np.zeros((ph, pw, 3), np.float64)
        self._sampled_in = np.zeros(ph, np.int64)  # sampled source rows in each preview row
        self._rows_in = np.zeros(ph, np.int64)  # source rows added to each preview row
        self.rows_done = 0  # source rows received, from the top

    @property
    def complete(self) -> bool:
        return self.rows_done == self.height

    @property
    def preview_rows(self) -> int:
        """Preview rows whose every source row is in (they form a block at the top)."""
        full = self._rows_in == np.diff(self._y_edges)
        return int(np.argmin(full)) if not full.all() else len(full)

    def add(self, y0: int, rows: np.ndarray) -> None:
        """Add uint8 rows (n, width[, bands]) that start at canvas row `y0` (in order)."""
        if y0 != self.rows_done or rows.shape[1] != self.width:
            raise ValueError(f"expected rows from y={self.rows_done}, width {self.width}")
        if y0 + len(rows) > self.height:
            raise ValueError(f"rows {y0}..{y0 + len(rows)} run past the height {self.height}")
        if not len(rows):
            return
        self._count(np.arange(y0, y0 + len(rows)), self._rows_in)
        first = -y0 % self._ky
        ys = np.arange(y0 + first, y0 + len(rows), self._ky)
        if len(ys):
            sampled = _rgb(rows)[first :: self._ky, :: self._kx]  # a view: nothing copied
            targets, starts = self._count(ys, self._sampled_in)
            summed = np.add.reduceat(sampled, starts, axis=0, dtype=np.uint32)
            summed = np.add.reduceat(summed, self._x_starts, axis=1)
            self._sums[targets[starts]] += summed
        self.rows_done += len(rows)

    def _count(self, ys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Count rows `ys` into their preview rows; (their preview rows, where runs start)."""
        targets = np.searchsorted(self._y_edges, ys, side="right") - 1
        starts = np.flatnonzero(np.r_[True, np.diff(targets) != 0])
        counts[targets[starts]] += np.diff(np.r_[starts, len(ys)])
        return targets, starts

    def image(self) -> np.ndarray:
        """The preview (h, w, 3) uint8: finished rows averaged, the others `BLANK`."""
        pw, ph = self.size
        out = np.empty((ph, pw, 3), np.uint8)
        out[:] = BLANK
        done = self.preview_rows
        if done:
            samples = self._sampled_in[:done, None, None] * self._x_counts[None, :, None]
            out[:done] = np.rint(self._sums[:done] / samples).astype(np.uint8)
        return out

    def png(self) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(self.image()).save(buffer, "PNG", compress_level=3)
        return buffer.getvalue()


def _rgb(rows: np.ndarray) -> np.ndarray:
    """Rows as RGB: grey repeated, alpha dropped."""
    if rows.ndim == 2:
        rows = rows[..., None]
    if rows.shape[2] == 1:
        return np.repeat(rows, 3, axis=2)
    return rows[..., :3]


class JobPreview:
    """Publishes the preview of one job's canvases (each upscale pass starts a new one).

    Bands are offered to a writer thread that stores the newest state, then waits
    `interval_s` before the next write (so the last band of a pause still shows); a
    complete canvas is stored at once, in the caller's thread, and never overwritten
    by an older state.
    """

    def __init__(
        self,
        store: ArtifactStore,
        job_id: str,
        owner: str | None = None,
        interval_s: float = 1.0,
        max_px: int = PREVIEW_PX,
    ):
        self.store = store
        self.job_id = job_id
        self.owner = owner
        self.interval_s = interval_s
        self.max_px = max_px
        self.canvases = 0
        self.writes = 0
        self._state = threading.Condition()  # guards the previews and `_offered`
        self._offered: tuple[RowPreview, int] | None = None
        self._written = threading.Lock()  # one write at a time, never an older one after
        self._sequence = 0
        self._last_written = 0
        self._worker: threading.Thread | None = None

    def canvas(self, width: int, height: int) -> RowSink:
        """A sink for the rows of a new `width` x `height` canvas of this job."""
        preview = RowPreview(width, height, self.max_px)
        self.canvases += 1
        number = self.canvases

        def add(y0: int, rows: np.ndarray) -> None:
            try:
                with self._state:
                    preview.add(y0, rows)
                    if not preview.complete:
                        self._offered = (preview, number)
                        self._state.notify()
                if preview.complete:
                    self._write(self._snapshot(preview, number))
                else:
                    self._start()
            except Exception:  # a preview never fails the job
                logger.warning("job %s: preview not written", self.job_id, exc_info=True)

        return add

    def _start(self) -> None:
        with self._state:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="job-preview", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        """Write what was offered, pausing between writes; end after a while with none."""
        while True:
            with self._state:
                while self._offered is None:
                    if not self._state.wait(timeout=_IDLE_S):
                        self._worker = None
                        return
                preview, number = self._offered
                self._offered = None
            self._write(self._snapshot(preview, number))
            time.sleep(self.interval_s)

    def _snapshot(self, preview: RowPreview, number: int) -> _Snapshot:
        with self._state:
            self._sequence += 1
            note = {
                "job_id": self.job_id,
                "owner": self.owner,
                "canvas": number,
                "width": preview.width,
                "height": preview.height,
                "rows_done": preview.rows_done,
                "preview_width": preview.size[0],
                "preview_height": preview.size[1],
                "preview_rows": preview.preview_rows,
                "updated_at": time.time(),
            }
            return _Snapshot(self._sequence, preview.png(), note)

    def _write(self, snapshot: _Snapshot) -> None:
        image_key, note_key = preview_keys(self.job_id)
        with self._written:
            if snapshot.sequence < self._last_written:
                return  # a newer state is stored already
            try:
                self.store.put_bytes(image_key, snapshot.png)
                self.store.put_bytes(note_key, json.dumps(snapshot.note).encode())
            except Exception:
                logger.warning("job %s: preview not stored", self.job_id, exc_info=True)
                return
            self._last_written = snapshot.sequence
            self.writes += 1


@dataclass(frozen=True)
class _Snapshot:
    sequence: int
    png: bytes
    note: dict[str, Any]
