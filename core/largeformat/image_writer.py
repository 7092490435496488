"""Streaming, atomic writer of a large-format image (PNG, JPEG or TIFF with DPI).

Rows are written with plain file writes into a spool next to the target, so
the canvas is never held in memory. The spool is an uncompressed TIFF whose
header tifffile lays out up front (its pixel area is a sparse hole until
filled), because libvips reads a TIFF with buffered reads strip by strip,
whereas it memory-maps a raw file, which would add the whole canvas to the
process's RSS. `commit` has libvips encode the spool sequentially into a
temporary file in the same directory and renames it over the target with
`os.replace`: nothing half-written is ever visible at the target path, and
`abort` (or an exception inside `with`) removes every temporary.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

import numpy as np
import pyvips
import tifffile

from core.errors import RequestError
from core.image_metadata import ImageMetadata
from core.image_tags import vips_with_metadata
from core.largeformat.row_preview import RowSink

__all__ = ["ImageFormat", "StreamingImageWriter"]

ImageFormat = Literal["png", "jpeg", "tiff"]

_JPEG_MAX_SIDE = 65535
# Classic TIFF addresses at most 4 GiB; past this raw size use BigTIFF (margin
# for tile tables and data that deflate cannot shrink).
_BIGTIFF_ABOVE = 3 * 2**30
_MM_PER_INCH = 25.4
_SPOOL_ROWS_PER_STRIP = 64


class StreamingImageWriter:
    """Writes a `width` x `height` image from row bands given top to bottom.

    Use as a context manager: an exception inside `with` aborts; leaving it
    without `commit` aborts too, so only a committed image ever appears.
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        format: ImageFormat,
        dpi: int = 300,
        quality: int = 92,
        bands: int = 3,
        metadata: ImageMetadata | None = None,
        rows_sink: RowSink | None = None,
    ):
        """`metadata`: the run id and parameters the file carries (see `core.image_tags`);
        `rows_sink`: also given every band written (e.g. a job's live preview)."""
        _check(width, height, format, dpi, quality, bands)
        self.path = Path(path)
        self.width = width
        self.height = height
        self.format = format
        self.dpi = dpi
        self.quality = quality
        self.bands = bands
        self.metadata = metadata
        self.rows_sink = rows_sink
        self._rows_written = 0
        self._finished = False
        stem = self.path.parent / f".{self.path.name}.{secrets.token_hex(6)}"
        self._spool_path = stem.with_name(stem.name + ".spool.tif")
        self._encoded_path = stem.with_name(stem.name + ".part")
        try:
            self._spool, self._data_offset = _open_spool(self._spool_path, width, height, bands)
        except BaseException:
            self._spool_path.unlink(missing_ok=True)
            raise

    def write_rows(self, y0: int, rows: np.ndarray) -> None:
        """Append uint8 rows (n, width, bands) starting at canvas row `y0` (in order)."""
        if self._finished:
            raise ValueError(f"writer for {self.path} is already committed or aborted")
        expected = (self.width, self.bands)
        if y0 != self._rows_written or rows.dtype != np.uint8 or rows.shape[1:] != expected:
            raise ValueError(
                f"expected uint8 rows (n, {self.width}, {self.bands}) from y={self._rows_written}, "
                f"got {rows.dtype} {rows.shape} at y={y0}"
            )
        if y0 + len(rows) > self.height:
            raise ValueError(f"rows {y0}..{y0 + len(rows)} run past the height {self.height}")
        self._spool.write(memoryview(np.ascontiguousarray(rows)).cast("B"))
        self._rows_written += len(rows)
        if self.rows_sink is not None:
            self.rows_sink(y0, rows)

    def pixels(self) -> np.memmap:
        """The finished canvas as a writable memory map of the spool, for edits before `commit`.

        Only the pages a caller touches are read; drop the map before `commit`.
        """
        if self._finished or self._rows_written != self.height:
            raise ValueError(f"only {self._rows_written} of {self.height} rows were written")
        self._spool.flush()
        shape = (self.height, self.width, self.bands)
        return np.memmap(self._spool_path, np.uint8, "r+", offset=self._data_offset, shape=shape)

    def commit(self) -> Path:
        """Encode the spooled rows and move the image into place; returns its path."""
        if self._finished:
            raise ValueError(f"writer for {self.path} is already committed or aborted")
        if self._rows_written != self.height:
            raise ValueError(f"only {self._rows_written} of {self.height} rows were written")
        try:
            self._spool.close()
            self._encode(self._encoded_path)
            with open(self._encoded_path, "rb") as encoded:
                os.fsync(encoded.fileno())
            os.replace(self._encoded_path, self.path)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        """Remove every temporary; nothing (more) appears at the target path. Idempotent."""
        self._finished = True
        self._spool.close()
        self._spool_path.unlink(missing_ok=True)
        self._encoded_path.unlink(missing_ok=True)

    def __enter__(self) -> StreamingImageWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._finished:
            self.abort()

    def _encode(self, target: Path) -> None:
        image = pyvips.Image.new_from_file(str(self._spool_path), access="sequential")
        pixels_per_mm = self.dpi / _MM_PER_INCH
        image = image.copy(
            interpretation="b-w" if self.bands == 1 else "srgb",
            xres=pixels_per_mm,
            yres=pixels_per_mm,
        )
        if self.metadata is not None:
            image = vips_with_metadata(image, self.format, self.metadata)
        if self.format == "png":
            image.pngsave(str(target))
        elif self.format == "jpeg":
            image.jpegsave(str(target), Q=self.quality)
        else:
            image.tiffsave(
                str(target),
                tile=True,
                tile_width=256,
                tile_height=256,
                compression="deflate",
                predictor="horizontal",
                resunit="inch",
                bigtiff=self.width * self.height * self.bands > _BIGTIFF_ABOVE,
            )


def _check(width: int, height: int, format: str, dpi: int, quality: int, bands: int) -> None:
    """Reject parameters the formats cannot store, before any pixel is rendered."""
    if format not in ("png", "jpeg", "tiff"):
        raise RequestError("format", f"must be one of png, jpeg, tiff, got {format!r}")
    for field, value in (("width", width), ("height", height), ("dpi", dpi)):
        if value < 1:
            raise RequestError(field, f"must be >= 1, got {value}")
    if not 1 <= quality <= 100:
        raise RequestError("quality", f"must be between 1 and 100, got {quality}")
    if bands not in (1, 3, 4):
        raise RequestError("bands", f"must be 1 (grey), 3 (RGB) or 4 (RGBA), got {bands}")
    if format == "jpeg":
        for field, value in (("width", width), ("height", height)):
            if value > _JPEG_MAX_SIDE:
                raise RequestError(
                    field, f"JPEG allows at most {_JPEG_MAX_SIDE} pixels per side, got {value}"
                )
        if bands not in (1, 3):
            raise RequestError("bands", f"JPEG stores 1 or 3 bands, got {bands}")


def _open_spool(path: Path, width: int, height: int, bands: int) -> tuple[BinaryIO, int]:
    """Create the spool TIFF; return it opened for writing at its first pixel, and that offset."""
    shape = (height, width) if bands == 1 else (height, width, bands)
    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        tiff.write(
            shape=shape,
            dtype=np.uint8,
            photometric="minisblack" if bands == 1 else "rgb",
            extrasamples=("unassalpha",) if bands == 4 else None,
            rowsperstrip=_SPOOL_ROWS_PER_STRIP,
        )
    with tifffile.TiffFile(path) as tiff:
        offset = tiff.pages.first.dataoffsets[0]
    spool = open(path, "r+b")  # closed by commit or abort
    spool.seek(offset)
    return spool, offset
