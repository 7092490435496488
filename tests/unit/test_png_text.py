"""Text chunks added to a stored PNG without decoding it (`core.png_text`)."""

from __future__ import annotations

import io
import json

import numpy as np
import png
import pytest
import pyvips
from PIL import Image

from core.image_tags import vips_with_metadata
from core.imaging import encode_image
from core.png_text import store_tagged_png, tag_png
from core.record_metadata import record_metadata
from core.store import ArtifactStore
from tests.unit.test_image_metadata import parse_a1111, read_metadata, record

PROMPT = "café «sous la pluie» — 雨の灯台"
NOISE = np.random.default_rng(0).integers(0, 256, (24, 40, 3), np.uint8)


def chunk_types(data: bytes) -> list[bytes]:
    return [kind for kind, _ in png.Reader(bytes=data).chunks()]


def tagged(data: bytes, metadata) -> bytes:
    out = io.BytesIO()
    tag_png(io.BytesIO(data), out, metadata)
    return out.getvalue()


def test_tags_go_in_as_utf8_itxt_after_ihdr_and_the_pixels_stay():
    metadata = record_metadata(record(prompt=PROMPT), "euler")
    data = tagged(encode_image(NOISE, "png"), metadata)
    found = read_metadata(data)
    assert found["run_id"] == metadata.run_id and found["parameters"] == metadata.parameters
    assert parse_a1111(found["parameters"])[0] == PROMPT
    assert json.loads(found["settings"])["prompt"] == PROMPT
    assert chunk_types(data)[:4] == [b"IHDR", b"iTXt", b"iTXt", b"iTXt"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), NOISE)


def test_retagging_replaces_the_old_tags_and_fixes_libvips_latin1_text():
    old = record_metadata(record(prompt=PROMPT), None)
    image = pyvips.Image.new_from_array(NOISE).copy(interpretation="srgb")
    written = vips_with_metadata(image, "png", old).write_to_buffer(".png")
    assert read_metadata(written)["parameters"] != old.parameters  # tEXt: UTF-8 read as Latin-1
    new = record_metadata(record(id="20260202-000000-000000-00000002", prompt=PROMPT), None)
    data = tagged(written, new)
    assert read_metadata(data)["run_id"] == new.run_id
    assert read_metadata(data)["parameters"] == new.parameters
    assert b"tEXt" not in chunk_types(data) and chunk_types(data).count(b"iTXt") == 3
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), NOISE)


def test_a_broken_file_is_refused():
    data = bytearray(encode_image(NOISE, "png"))
    data[data.index(b"IDAT") + 8] ^= 0xFF  # the first IDAT's CRC no longer matches
    with pytest.raises(png.ChunkError):
        tagged(bytes(data), record_metadata(record(), None))
    with pytest.raises(png.FormatError):
        tagged(b"not a png", record_metadata(record(), None))


def test_a_stored_png_is_copied_tagged_or_tagged_in_place(store: ArtifactStore):
    source = encode_image(NOISE, "png")
    store.put_bytes("in/a.png", source)
    metadata = record_metadata(record(prompt=PROMPT), None)
    store_tagged_png(store, "in/a.png", "out/a.png", metadata)
    assert store.get_bytes("in/a.png") == source
    assert read_metadata(store.get_bytes("out/a.png"))["parameters"] == metadata.parameters
    store_tagged_png(store, "in/a.png", "in/a.png", metadata)
    assert store.get_bytes("in/a.png") == store.get_bytes("out/a.png")
