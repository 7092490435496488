"""Small JPEG previews of rendered images, stored as ``campaigns/<name>/thumbs/<key>.jpg``."""

from __future__ import annotations

import io

from PIL import Image

from core.campaign import layout
from core.errors import RequestError
from core.store import ArtifactStore

__all__ = ["THUMB_PX", "ensure_thumbnail", "thumbnail_jpeg"]

THUMB_PX = 256


def thumbnail_jpeg(data: bytes, max_px: int = THUMB_PX) -> bytes:
    """A JPEG of the image in `data`, scaled to fit `max_px` x `max_px` (never enlarged)."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (max_px, max_px))  # a JPEG decodes straight at a smaller scale
        preview = image.convert("RGB")
    preview.thumbnail((max_px, max_px), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    preview.save(out, "JPEG", quality=82, optimize=True)
    return out.getvalue()


def ensure_thumbnail(
    store: ArtifactStore, campaign: str, job_key: str, image_key: str, max_px: int = THUMB_PX
) -> str | None:
    """Key of the job's thumbnail, made from the stored image if it is not there yet.

    None when the image cannot give one (missing, not an image, too large to decode);
    store failures propagate.
    """
    key = layout.thumb_key(campaign, job_key)
    if store.exists(key):
        return key
    try:
        preview = thumbnail_jpeg(store.get_bytes(image_key), max_px)
    except (RequestError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return store.put_bytes(key, preview)
