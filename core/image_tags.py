"""Writes `ImageMetadata` into each image format, with Pillow or with libvips.

- PNG: iTXt chunks `parameters` (AUTOMATIC1111's), `run_id` and `rendercluster` (JSON).
- JPEG and WebP: EXIF ImageDescription (the JSON), EXIF UserComment (the `parameters`
  text, as AUTOMATIC1111 writes it) and an XMP packet with all three.
- TIFF: the ImageDescription tag (the JSON) and an XMP packet (tag 700).
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

import pyvips
from PIL import Image, PngImagePlugin

from core.image_metadata import ImageMetadata

__all__ = ["XMP_NAMESPACE", "exif_bytes", "pil_save_options", "vips_with_metadata", "xmp_packet"]

XMP_NAMESPACE = "https://github.com/render-cluster/xmp/1.0/"
IMAGE_DESCRIPTION = 0x010E
EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
XMP_TAG = 700
_UNICODE_PREFIX = b"UNICODE\x00"  # EXIF UserComment character code (UTF-16, big-endian)


def xmp_packet(metadata: ImageMetadata) -> bytes:
    """An XMP packet with the run id, the `parameters` text and the settings JSON."""
    attributes = " ".join(
        f"rendercluster:{name}={quoteattr(value)}"
        for name, value in (
            ("RunId", metadata.run_id),
            ("Parameters", metadata.parameters),
            ("Settings", metadata.settings),
        )
    )
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:rendercluster="{XMP_NAMESPACE}" {attributes}/>'
        "</rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )
    return text.encode("utf-8")


def exif_bytes(metadata: ImageMetadata) -> bytes:
    """EXIF (with its `Exif\\0\\0` header): ImageDescription and UserComment."""
    exif = Image.Exif()
    exif[IMAGE_DESCRIPTION] = metadata.settings
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = _UNICODE_PREFIX + metadata.parameters.encode("utf-16-be")
    return exif.tobytes()


def pil_save_options(fmt: str, metadata: ImageMetadata) -> dict[str, Any]:
    """Keyword arguments of `Image.save` that write `metadata` in format `fmt`."""
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.text_fields().items():
            info.add_itxt(key, value)
        return {"pnginfo": info}
    if fmt in ("jpeg", "webp"):
        return {"exif": exif_bytes(metadata), "xmp": xmp_packet(metadata)}
    if fmt == "tiff":
        return {"tiffinfo": {IMAGE_DESCRIPTION: metadata.settings, XMP_TAG: xmp_packet(metadata)}}
    raise ValueError(f"no metadata layout for format {fmt!r}")


def vips_with_metadata(image: pyvips.Image, fmt: str, metadata: ImageMetadata) -> pyvips.Image:
    """A copy of `image` whose save in `fmt` (png, jpeg or tiff) writes `metadata`."""
    image = image.copy()
    image.set_type(pyvips.GValue.blob_type, "xmp-data", xmp_packet(metadata))
    if fmt == "png":
        for index, (key, value) in enumerate(metadata.text_fields().items()):
            image.set_type(pyvips.GValue.gstr_type, f"png-comment-{index}-{key}", value)
    elif fmt == "jpeg":
        image.set_type(pyvips.GValue.blob_type, "exif-data", exif_bytes(metadata))
    elif fmt == "tiff":
        image.set_type(pyvips.GValue.gstr_type, "image-description", metadata.settings)
    else:
        raise ValueError(f"no metadata layout for format {fmt!r}")
    return image
