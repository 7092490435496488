"""Review-board deep zoom: a tile pyramid of a full-resolution artifact, made once.

libvips (`dzsave`, Deep Zoom layout) cuts the artifact into 256 px JPEG tiles at
every level, from 1 x 1 pixel (level 0) to the full resolution (the deepest level,
``ceil(log2(longest side))``); each level halves the one below it, rounding up. The
tiles go into the store beside the artifact through the store's own API (a local
directory or S3 alike): ``<artifact key>.tiles/<level>/<col>_<row>.jpg``, and
``<artifact key>.tiles/info.json`` last, so a pyramid with its info is complete.
The run page's viewer asks only for the tiles in view. Call these off the event loop.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import NotFoundError, RequestError
from core.store import ArtifactStore

__all__ = ["TILE_PX", "Pyramid", "ensure_pyramid", "info_key", "read_tile", "tile_key"]

TILE_PX = 256
QUALITY = 92
UPLOADS = 8  # tiles stored at once
logger = logging.getLogger("ray.serve")
_LOCKS = [threading.Lock() for _ in range(64)]  # one per artifact at a time, bounded


@dataclass(frozen=True)
class Pyramid:
    """The geometry of one artifact's pyramid (what the viewer needs)."""

    width: int
    height: int
    tile: int = TILE_PX

    @property
    def max_level(self) -> int:
        """The full-resolution level (level 0 is one pixel)."""
        return math.ceil(math.log2(max(self.width, self.height)))

    def level_size(self, level: int) -> tuple[int, int]:
        """(width, height) at `level`: the full size halved, rounding up, per level above."""
        shrink = 2 ** (self.max_level - level)
        return -(-self.width // shrink), -(-self.height // shrink)

    def grid(self, level: int) -> tuple[int, int]:
        """(columns, rows) of tiles at `level`."""
        width, height = self.level_size(level)
        return -(-width // self.tile), -(-height // self.tile)

    def has_tile(self, level: int, col: int, row: int) -> bool:
        if not 0 <= level <= self.max_level:
            return False
        cols, rows = self.grid(level)
        return 0 <= col < cols and 0 <= row < rows

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "max_level": self.max_level}


def _prefix(image_key: str) -> str:
    return f"{image_key}.tiles/"


def info_key(image_key: str) -> str:
    return f"{_prefix(image_key)}info.json"


def tile_key(image_key: str, level: int, col: int, row: int) -> str:
    return f"{_prefix(image_key)}{level}/{col}_{row}.jpg"


def ensure_pyramid(store: ArtifactStore, image_key: str) -> Pyramid | None:
    """The pyramid of `image_key`, cut and stored first if missing; None if the artifact
    is missing or no image libvips can read."""
    found = _stored(store, image_key)
    if found is not None:
        return found
    with _lock(image_key):  # one maker per artifact in this process
        found = _stored(store, image_key)
        if found is not None:
            return found
        try:
            return _make(store, image_key)
        except (NotFoundError, RequestError, OSError, ValueError):
            return None
        except Exception:  # libvips' own errors: no pyramid, no 500
            logger.warning("no pyramid for an artifact", exc_info=True)
            return None


def read_tile(store: ArtifactStore, image_key: str, level: int, col: int, row: int) -> bytes | None:
    """One stored tile (its pyramid made first if need be); None if there is no such tile."""
    pyramid = ensure_pyramid(store, image_key)
    if pyramid is None or not pyramid.has_tile(level, col, row):
        return None
    try:
        return store.get_bytes(tile_key(image_key, level, col, row))
    except NotFoundError:
        return None


def _stored(store: ArtifactStore, image_key: str) -> Pyramid | None:
    try:
        info = json.loads(store.get_bytes(info_key(image_key)))
    except NotFoundError:
        return None
    return Pyramid(int(info["width"]), int(info["height"]), int(info["tile"]))


def _lock(image_key: str) -> threading.Lock:
    return _LOCKS[zlib.crc32(image_key.encode()) % len(_LOCKS)]


def _make(store: ArtifactStore, image_key: str) -> Pyramid:
    import pyvips  # noqa: PLC0415 - a native library: loaded when first needed

    with tempfile.TemporaryDirectory(prefix="rc-pyramid-") as tmp:
        source = store.download(image_key, Path(tmp) / "source")
        image = pyvips.Image.new_from_file(str(source), access="sequential")
        if image.hasalpha():
            image = image.flatten(background=[255, 255, 255])
        image = image.colourspace("srgb")
        pyramid = Pyramid(image.width, image.height)
        image.dzsave(
            str(Path(tmp) / "p"),
            tile_size=pyramid.tile,
            overlap=0,
            depth="onepixel",
            suffix=f".jpg[Q={QUALITY},subsample-mode=off]",
        )
        _upload(store, image_key, pyramid, Path(tmp) / "p_files")
    store.put_bytes(info_key(image_key), json.dumps(pyramid.as_dict()).encode())
    return pyramid


def _upload(store: ArtifactStore, image_key: str, pyramid: Pyramid, tiles: Path) -> None:
    """Every tile libvips wrote, under its store key (checked against the geometry); a
    few at a time, as a billboard has over a thousand and S3 answers each PUT alone."""
    places = [
        (level, col, row)
        for level in range(pyramid.max_level + 1)
        for col in range(pyramid.grid(level)[0])
        for row in range(pyramid.grid(level)[1])
    ]

    def put(place: tuple[int, int, int]) -> None:
        level, col, row = place
        store.put_file(tile_key(image_key, *place), tiles / str(level) / f"{col}_{row}.jpg")

    with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
        list(pool.map(put, places))
