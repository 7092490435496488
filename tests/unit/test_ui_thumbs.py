"""Review-board previews: made once, kept beside the artifact, never larger than asked."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.imaging import encode_image
from core.store import LocalStore
from serve.ui import thumbs


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def test_a_wide_image_gets_a_thumbnail_stored_beside_it(tmp_path):
    store = LocalStore(tmp_path)
    pixels = np.zeros((1000, 8000, 3), dtype=np.uint8)
    pixels[:, ::2] = 255
    key = store.put_bytes("renders/x/image.png", encode_image(pixels, "png"))
    small = thumbs.ensure_thumbnail(store, key)
    assert _size(small) == (thumbs.THUMB_PX, 48)
    assert store.get_bytes(f"{key}.thumb.jpg") == small
    store.put_bytes(key, b"replaced")  # made once: the stored preview is served from now on
    assert thumbs.ensure_thumbnail(store, key) == small


def test_a_small_image_is_never_enlarged_and_a_broken_one_gives_none(tmp_path):
    store = LocalStore(tmp_path)
    key = store.put_bytes(
        "renders/y/image.png", encode_image(np.zeros((40, 60, 3), np.uint8), "png")
    )
    assert _size(thumbs.ensure_thumbnail(store, key)) == (60, 40)
    bad = store.put_bytes("renders/z/image.png", b"not an image")
    assert thumbs.ensure_thumbnail(store, bad) is None
    assert thumbs.ensure_thumbnail(store, "renders/missing.png") is None
