import os

import numpy as np
import pytest
import tifffile
from PIL import Image

import core.largeformat.image_writer as image_writer
from core.errors import RequestError
from core.largeformat.image_writer import StreamingImageWriter


def _smooth(height, width, bands=3, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), np.uint8)
    image = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))
    if bands == 1:
        return image[:, :, :1].copy()
    if bands == 4:
        return np.concatenate([image, image[:, :, :1]], axis=2)
    return image


def _write(path, image, format, bands=3, dpi=300, step=37):
    height, width = image.shape[:2]
    with StreamingImageWriter(path, width, height, format, dpi=dpi, bands=bands) as writer:
        for y0 in range(0, height, step):
            writer.write_rows(y0, image[y0 : y0 + step])
        assert writer.commit() == path
    return path


def _leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@pytest.mark.parametrize("bands", [3, 1, 4])
def test_png_round_trips_exactly_with_its_dpi(tmp_path, bands):
    image = _smooth(130, 301, bands)
    path = _write(tmp_path / "out.png", image, "png", bands=bands, dpi=300)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (301, 130)
        assert png.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        pixels = np.asarray(png)
    assert np.array_equal(pixels.reshape(image.shape), image)
    assert _leftovers(tmp_path, {"out.png"}) == []


@pytest.mark.parametrize("bands", [3, 1])
def test_tiff_round_trips_exactly_tiled_and_compressed_with_its_dpi(tmp_path, bands):
    image = _smooth(300, 520, bands)
    path = _write(tmp_path / "out.tif", image, "tiff", bands=bands, dpi=150)
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages.first
        assert page.is_tiled and page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert not tiff.is_bigtiff
        assert page.tags["XResolution"].value == (150, 1)
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.INCH
        pixels = page.asarray()
    assert np.array_equal(pixels.reshape(image.shape), image)
    with Image.open(path) as tif:
        assert tif.info["dpi"] == pytest.approx((150, 150))


def test_tiff_switches_to_bigtiff_past_the_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(image_writer, "_BIGTIFF_ABOVE", 1000)
    path = _write(tmp_path / "big.tif", _smooth(40, 40), "tiff")
    with tifffile.TiffFile(path) as tiff:
        assert tiff.is_bigtiff


def test_jpeg_round_trips_approximately_with_its_dpi(tmp_path):
    image = _smooth(200, 333)
    path = _write(tmp_path / "out.jpg", image, "jpeg", dpi=600)
    with Image.open(path) as jpeg:
        assert jpeg.format == "JPEG" and jpeg.info["dpi"] == (600, 600)
        pixels = np.asarray(jpeg).astype(int)
    assert np.abs(pixels - image).mean() < 3.0


def test_abort_leaves_nothing_and_keeps_an_existing_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous render")
    writer = StreamingImageWriter(target, 64, 64, "png")
    writer.write_rows(0, _smooth(32, 64))
    assert len(_leftovers(tmp_path, {"out.png"})) == 1  # the spool
    writer.abort()
    writer.abort()
    assert target.read_bytes() == b"previous render"
    assert _leftovers(tmp_path, {"out.png"}) == []


def test_an_exception_inside_with_leaves_nothing(tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError), StreamingImageWriter(target, 64, 64, "tiff") as writer:
        writer.write_rows(0, _smooth(32, 64))
        raise RuntimeError("tile r3c4 failed")
    assert list(tmp_path.iterdir()) == []


def test_leaving_with_without_commit_leaves_nothing(tmp_path):
    with StreamingImageWriter(tmp_path / "out.png", 64, 64, "png") as writer:
        writer.write_rows(0, _smooth(64, 64))
    assert list(tmp_path.iterdir()) == []


def test_commit_of_an_incomplete_image_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="32 of 64 rows"):
        with StreamingImageWriter(tmp_path / "out.png", 64, 64, "png") as writer:
            writer.write_rows(0, _smooth(32, 64))
            writer.commit()
    assert list(tmp_path.iterdir()) == []


def test_a_failing_encoder_leaves_nothing(tmp_path, monkeypatch):
    def fail(self, target):
        target.write_bytes(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(StreamingImageWriter, "_encode", fail)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "out.png", _smooth(64, 64), "png")
    assert list(tmp_path.iterdir()) == []


def test_committed_file_gets_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = _write(tmp_path / "out.png", _smooth(16, 16), "png")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_rows_must_come_in_order_with_the_right_shape(tmp_path):
    with StreamingImageWriter(tmp_path / "out.png", 64, 64, "png") as writer:
        with pytest.raises(ValueError, match="from y=0"):
            writer.write_rows(8, _smooth(8, 64))
        with pytest.raises(ValueError):
            writer.write_rows(0, _smooth(8, 63))
        with pytest.raises(ValueError):
            writer.write_rows(0, _smooth(8, 64).astype(np.float32))
        writer.write_rows(0, _smooth(60, 64))
        with pytest.raises(ValueError, match="past the height"):
            writer.write_rows(60, _smooth(8, 64))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 70000, "format": "jpeg"}, "width"),
        ({"height": 65536, "format": "jpeg"}, "height"),
        ({"format": "webp"}, "format"),
        ({"width": 0}, "width"),
        ({"dpi": 0}, "dpi"),
        ({"quality": 101}, "quality"),
        ({"bands": 2}, "bands"),
        ({"bands": 4, "format": "jpeg"}, "bands"),
    ],
)
def test_invalid_parameters_name_the_field_and_create_nothing(tmp_path, kwargs, field):
    args = {"width": 64, "height": 64, "format": "png"} | kwargs
    with pytest.raises(RequestError) as caught:
        StreamingImageWriter(tmp_path / "out", **args)
    assert caught.value.field == field
    assert list(tmp_path.iterdir()) == []
