"""The live preview of a large render's finished rows (pure: no Ray, a local store)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import StorageConfig
from core.largeformat.image_writer import StreamingImageWriter
from core.largeformat.row_preview import BLANK, JobPreview, RowPreview, preview_keys
from core.store import open_store
from tests.unit.largeformat.test_runner import PureModel, _job, _runner
from tests.waiting import wait_until


def _canvas(width: int, height: int) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _area_mean(canvas: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The reference: each preview pixel the mean of its block (exact multiples here)."""
    pw, ph = size
    h, w = canvas.shape[:2]
    blocks = canvas.reshape(ph, h // ph, pw, w // pw, 3).astype(np.float64)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


def test_rows_fill_from_the_top_and_the_rest_stays_blank():
    canvas = _canvas(4096, 1024)
    preview = RowPreview(4096, 1024, max_px=512)
    assert preview.size == (512, 128)
    expected = _area_mean(canvas[::2, ::2], preview.size)  # 8 px blocks: 4 x 4 samples each
    for y0 in range(0, 300, 100):  # bands that do not line up with preview rows
        preview.add(y0, canvas[y0 : y0 + 100])
    image = preview.image()
    done = preview.preview_rows
    assert done == 300 // 8 and preview.rows_done == 300 and not preview.complete
    assert np.array_equal(image[:done], expected[:done])
    assert (image[done:] == BLANK).all()  # a half-filled preview row is still blank
    preview.add(300, canvas[300:])
    assert preview.complete and np.array_equal(preview.image(), expected)


def test_a_small_canvas_is_averaged_over_every_pixel_and_a_billboard_over_a_sample():
    canvas = _canvas(2048, 512)  # 4 px blocks: every pixel counts
    exact = RowPreview(2048, 512)
    exact.add(0, canvas)
    assert np.array_equal(exact.image(), _area_mean(canvas, (512, 128)))
    billboard = np.repeat(np.repeat(_canvas(512, 128), 32, axis=0), 32, axis=1)
    sampled = RowPreview(16384, 4096)
    for y0 in range(0, 4096, 448):  # flat 32 px blocks: the sample is the block
        sampled.add(y0, billboard[y0 : y0 + 448])
    assert np.array_equal(sampled.image(), _canvas(512, 128))


def test_small_grey_and_tall_canvases_are_never_enlarged_and_fit_both_sides():
    assert RowPreview(100, 40).size == (100, 40)
    assert RowPreview(1000, 8000, max_px=512).size == (64, 512)
    grey = np.full((10, 30), 77, np.uint8)
    preview = RowPreview(30, 10)
    preview.add(0, grey)
    assert (preview.image() == 77).all()


def test_rows_out_of_order_are_refused():
    preview = RowPreview(64, 64)
    with pytest.raises(ValueError, match="from y=0"):
        preview.add(8, _canvas(64, 8))


def test_the_job_preview_is_stored_at_most_every_interval_and_when_complete(tmp_path: Path):
    store = open_store(StorageConfig(kind="local", path=tmp_path))
    published = JobPreview(store, "job-7", owner="acme", interval_s=0.3)
    canvas = _canvas(1024, 256)
    add = published.canvas(1024, 256)
    image_key, note_key = preview_keys("job-7")

    def note() -> dict:
        return json.loads(store.get_bytes(note_key))

    add(0, canvas[:64])  # stored by the writer thread
    wait_until(lambda: store.exists(note_key), timeout_s=10, what="the first preview")
    assert note()["owner"] == "acme" and note()["rows_done"] == 64 and note()["preview_rows"] == 32
    add(64, canvas[64:128])
    add(128, canvas[128:192])  # within the interval: only the newest state is stored, later
    wait_until(lambda: note()["rows_done"], lambda rows: rows == 192, timeout_s=10, what="rows")
    add(192, canvas[192:])  # complete: stored at once, in this thread
    assert note()["rows_done"] == 256 and note()["preview_height"] == 128
    stored = np.asarray(Image.open(io.BytesIO(store.get_bytes(image_key))))
    assert np.array_equal(stored, _area_mean(canvas, (512, 128)))
    time.sleep(0.5)
    assert note()["rows_done"] == 256  # nothing older stored after it


def test_a_failing_store_never_fails_the_rows(tmp_path: Path):
    class Broken:
        def put_bytes(self, key: str, data: bytes) -> str:
            raise OSError("disk full")

    add = JobPreview(Broken(), "job-8").canvas(64, 64)  # type: ignore[arg-type]
    add(0, _canvas(64, 64))  # logged, not raised


def test_the_writer_hands_every_band_to_its_sink(tmp_path: Path):
    bands: list[tuple[int, int]] = []

    def sink(y0: int, rows: np.ndarray) -> None:
        bands.append((y0, len(rows)))

    with StreamingImageWriter(tmp_path / "out.png", 32, 20, "png", rows_sink=sink) as writer:
        writer.write_rows(0, _canvas(32, 12))
        writer.write_rows(12, _canvas(32, 8))
        writer.commit()
    assert bands == [(0, 12), (12, 8)]


def test_a_job_that_asks_for_a_preview_leaves_one_of_its_finished_file(tmp_path: Path):
    runner = _runner(tmp_path)
    job = _job(preview=True, owner="acme")
    result = asyncio.run(runner.render(job, PureModel()))
    image_key, note_key = preview_keys(job.job_id)
    note = json.loads(runner.store.get_bytes(note_key))
    assert note["owner"] == "acme" and note["rows_done"] == job.height
    final = np.asarray(Image.open(io.BytesIO(runner.store.get_bytes(result.output_key))))
    stored = np.asarray(Image.open(io.BytesIO(runner.store.get_bytes(image_key))))
    assert stored.shape == (128, 256, 3) and np.array_equal(stored, final)  # no downscale
    plain = _runner(tmp_path / "b")
    asyncio.run(plain.render(_job(), PureModel()))
    assert not plain.store.exists(image_key)  # only jobs that ask for one


def test_the_preview_goes_through_the_store_api_local_or_s3(store):
    add = JobPreview(store, "job-9", owner="acme").canvas(128, 64)
    add(0, _canvas(128, 64))
    image_key, note_key = preview_keys("job-9")
    assert json.loads(store.get_bytes(note_key))["rows_done"] == 64
    assert store.get_bytes(image_key).startswith(b"\x89PNG")
