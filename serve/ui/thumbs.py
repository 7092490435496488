"""Review-board thumbnails: a small JPEG made once from an artifact and stored beside it.

A thumbnail of ``<artifact key>`` lives at ``<artifact key>.thumb.jpg`` (the run page
zooms through a tile pyramid instead: `serve.ui.deepzoom`). libvips makes it
(shrink-on-load: a billboard never sits decoded in memory whole); Pillow is the
fallback for what libvips cannot read. Call these functions off the event loop.
"""

from __future__ import annotations

from core.campaign.thumbs import thumbnail_jpeg
from core.errors import NotFoundError, RequestError
from core.records import RunRecord
from core.store import ArtifactStore

THUMB_PX = 384
IMAGE_OUTPUTS = ("image", "review_image")


def thumb_key(image_key: str) -> str:
    return f"{image_key}.thumb.jpg"


def image_output(record: RunRecord) -> str | None:
    """The output name a record's picture is under (its image, else its review image)."""
    for name in IMAGE_OUTPUTS:
        if name in record.outputs:
            return name
    return None


def make_thumbnail(data: bytes, max_px: int = THUMB_PX) -> bytes:
    """A JPEG of the image in `data` that fits `max_px` x `max_px`."""
    try:
        import pyvips  # noqa: PLC0415 - a native library: loaded when first needed

        image = pyvips.Image.thumbnail_buffer(data, max_px, height=max_px, size="down")
        if image.hasalpha():
            image = image.flatten(background=[255, 255, 255])
        return image.colourspace("srgb").write_to_buffer(".jpg", Q=82, strip=True)
    except Exception:  # libvips missing or unable to read it: Pillow's turn
        return thumbnail_jpeg(data, max_px)


def ensure_thumbnail(store: ArtifactStore, image_key: str) -> bytes | None:
    """The stored thumbnail of `image_key`, made and stored first if missing; None if the
    artifact is missing or is no image it can read."""
    key = thumb_key(image_key)
    try:
        return store.get_bytes(key)
    except NotFoundError:
        pass
    try:
        preview = make_thumbnail(store.get_bytes(image_key))
    except (NotFoundError, RequestError, OSError, ValueError):
        return None
    except Exception:  # PIL's DecompressionBombError and friends: no thumbnail, no 500
        return None
    store.put_bytes(key, preview)
    return preview
