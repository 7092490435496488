"""Review-board deep zoom: a tile pyramid made once beside the artifact, full-res at the
deepest level (no Ray, a local store)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.imaging import encode_image
from core.store import LocalStore
from serve.ui import deepzoom
from serve.ui.deepzoom import Pyramid


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def _billboard(width: int, height: int) -> np.ndarray:
    """Fine detail (noise on a gradient): a downscaled tile cannot pass for a full-res one."""
    rng = np.random.default_rng(9)
    ramp = np.linspace(0, 160, width, dtype=np.float32)[None, :, None]
    noise = rng.integers(0, 96, (height, width, 3)).astype(np.float32)
    return (ramp + noise).clip(0, 255).astype(np.uint8)


def test_the_geometry_halves_rounding_up_down_to_one_pixel():
    pyramid = Pyramid(4100, 1030)
    assert pyramid.max_level == 13
    assert pyramid.level_size(13) == (4100, 1030) and pyramid.level_size(12) == (2050, 515)
    assert pyramid.level_size(11) == (1025, 258) and pyramid.level_size(0) == (1, 1)
    assert pyramid.grid(13) == (17, 5)
    assert pyramid.has_tile(13, 16, 4) and not pyramid.has_tile(13, 17, 0)
    assert not pyramid.has_tile(14, 0, 0) and not pyramid.has_tile(-1, 0, 0)


def test_a_billboard_is_cut_once_and_its_deepest_tiles_are_full_resolution_crops(tmp_path):
    store = LocalStore(tmp_path)
    image = _billboard(4100, 1030)
    key = store.put_bytes("renders/big/image.png", encode_image(image, "png"))
    pyramid = deepzoom.ensure_pyramid(store, key)
    assert pyramid == Pyramid(4100, 1030)
    assert store.exists(deepzoom.info_key(key))
    deepest = pyramid.max_level
    for col, row in [(0, 0), (7, 2), (16, 4)]:  # the last one: a partial edge tile
        tile = _pixels(deepzoom.read_tile(store, key, deepest, col, row))
        crop = image[row * 256 : (row + 1) * 256, col * 256 : (col + 1) * 256].astype(np.int16)
        assert tile.shape == crop.shape
        assert np.abs(tile - crop).mean() < 6  # JPEG's loss only
    coarse = _pixels(deepzoom.read_tile(store, key, deepest - 1, 0, 0))
    half = np.asarray(Image.fromarray(image[:512, :512]).reduce(2)).astype(np.int16)
    assert np.abs(coarse - half).mean() < 6  # the level above is the image halved
    assert np.abs(coarse - image[:256, :256].astype(np.int16)).mean() > 15
    assert deepzoom.read_tile(store, key, deepest, 17, 0) is None  # past the edge
    assert deepzoom.read_tile(store, key, deepest + 1, 0, 0) is None

    store.delete(deepzoom.tile_key(key, 0, 0, 0))  # made once: a second call cuts nothing
    assert deepzoom.ensure_pyramid(store, key) == pyramid
    assert not store.exists(deepzoom.tile_key(key, 0, 0, 0))


def test_a_missing_or_broken_artifact_gives_no_pyramid(tmp_path):
    store = LocalStore(tmp_path)
    assert deepzoom.ensure_pyramid(store, "renders/none/image.png") is None
    key = store.put_bytes("renders/bad/image.png", b"not an image at all")
    assert deepzoom.ensure_pyramid(store, key) is None
    assert deepzoom.read_tile(store, key, 0, 0, 0) is None
    assert not store.exists(deepzoom.info_key(key))


def test_a_grey_or_transparent_image_is_tiled_in_rgb(tmp_path):
    store = LocalStore(tmp_path)
    rgba = np.zeros((40, 300, 4), np.uint8)
    rgba[..., 0] = 200  # red where opaque, white where transparent
    rgba[:, :150, 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG")
    key = store.put_bytes("renders/alpha/image.png", buffer.getvalue())
    pyramid = deepzoom.ensure_pyramid(store, key)
    tile = _pixels(deepzoom.read_tile(store, key, pyramid.max_level, 0, 0))
    assert tile.shape == (40, 256, 3)
    assert abs(int(tile[20, 20, 0]) - 200) < 8 and tile[20, 200].min() > 240


def test_the_pyramid_goes_through_the_store_api_local_or_s3(store):
    image = _billboard(700, 300)
    key = store.put_bytes("renders/s3/image.jpg", encode_image(image, "jpeg"))
    pyramid = deepzoom.ensure_pyramid(store, key)
    assert pyramid == Pyramid(700, 300) and pyramid.max_level == 10
    assert store.exists(deepzoom.info_key(key))
    tiles = [k for k in store.list_keys(f"{key}.tiles/") if k.endswith(".jpg")]
    assert len(tiles) == sum(c * r for c, r in map(pyramid.grid, range(11)))
    tile = _pixels(deepzoom.read_tile(store, key, 10, 2, 1))
    assert tile.shape == (300 - 256, 700 - 512, 3)
