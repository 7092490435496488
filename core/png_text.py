"""Text chunks written into an existing PNG file without decoding its pixels.

`tag_png` streams a PNG chunk by chunk (pypng checks every chunk's CRC) and
writes the same chunks with `ImageMetadata`'s fields as UTF-8 iTXt chunks after
IHDR, dropping any text chunk of the same keyword (libvips writes its text as
Latin-1 tEXt, which mangles a non-ASCII prompt). Memory stays at one chunk, so a
billboard-size PNG is tagged at the speed of a file copy. `store_tagged_png`
does it from one store key to another through a temporary file;
`store_utf8_tags` re-tags a large-format PNG in place when its text needs UTF-8.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import BinaryIO

import png

from core.image_metadata import ImageMetadata
from core.store import ArtifactStore

__all__ = ["itxt_data", "store_tagged_png", "store_utf8_tags", "tag_png"]

TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
SPOOL_BYTES = 32 * 1024 * 1024  # a tagged file larger than this spools to disk


def itxt_data(keyword: str, text: str) -> bytes:
    """The data of an uncompressed iTXt chunk holding `text` (UTF-8) under `keyword`."""
    # keyword, NUL, compression flag and method, empty language tag and translated keyword
    return keyword.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8")


def tag_png(source: BinaryIO, dest: BinaryIO, metadata: ImageMetadata) -> None:
    """Copy the PNG `source` to `dest` with `metadata` in iTXt chunks; pixels untouched.

    Raises `png.FormatError` for a broken file (`png.ChunkError`: a chunk's CRC is wrong).
    """
    png.write_chunks(dest, _tagged_chunks(png.Reader(file=source).chunks(), metadata))


def store_tagged_png(
    store: ArtifactStore, source_key: str, dest_key: str, metadata: ImageMetadata
) -> None:
    """Store the PNG at `source_key` as `dest_key` (may be the same key), tagged."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        with store.open(source_key) as source:
            tag_png(source, spool, metadata)
        spool.seek(0)
        store.put_file(dest_key, spool)


def store_utf8_tags(store: ArtifactStore, key: str, metadata: ImageMetadata) -> bool:
    """Rewrite a libvips-written PNG's tags as iTXt if any is non-ASCII; whether it did.

    ASCII text reads alike from tEXt, so that file (the common case) is left alone.
    """
    if all(text.isascii() for text in metadata.text_fields().values()):
        return False
    store_tagged_png(store, key, key, metadata)
    return True


def _tagged_chunks(
    chunks: Iterator[tuple[bytes, bytes]], metadata: ImageMetadata
) -> Iterator[tuple[bytes, bytes]]:
    fields = metadata.text_fields()
    keywords = {keyword.encode("latin-1") for keyword in fields}
    for kind, data in chunks:
        if kind in TEXT_CHUNKS and data.partition(b"\0")[0] in keywords:
            continue
        yield kind, data
        if kind == b"IHDR":
            for keyword, text in fields.items():
                yield b"iTXt", itxt_data(keyword, text)
