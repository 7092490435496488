"""Decode uploaded images safely and encode results.

Uploads are checked before any pixel is decoded: the base64 text, the byte
size, the format (PNG, JPEG or WebP only) and the pixel count from the header,
so a decompression bomb is refused without being expanded.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import ModelOutputError, RequestError
from core.image_metadata import ImageMetadata
from core.image_tags import pil_save_options

ALLOWED_UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")  # never EPS (Ghostscript) or others
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "tiff": "image/tiff",
}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "tiff": "tif"}


B64_CHUNK = 2**20  # characters decoded per step (a multiple of 4)


def unit_floats_to_uint8(images: np.ndarray, model: str, dtype: str) -> np.ndarray:
    """A pipeline's [0, 1] floats as uint8 levels; `ModelOutputError` if any is NaN or
    infinite (a model run in a precision its weights overflow, e.g. Flux in float16),
    never a black or white image."""
    bad = int(np.count_nonzero(~np.isfinite(images)))
    if bad:
        raise ModelOutputError(model, bad, dtype)
    return (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def b64decode_strict(text: str) -> bytes:
    """`base64.b64decode(text, validate=True)` in steps of a MiB, so a 50 MB upload decoded
    in a thread never holds the GIL (and the ingress's event loop) for long at once."""
    raw = text.encode("ascii")
    if len(raw) % 4:
        raise binascii.Error("incorrect padding")
    parts = [
        binascii.a2b_base64(raw[start : start + B64_CHUNK], strict_mode=True)
        for start in range(0, len(raw), B64_CHUNK)
    ]
    return b"".join(parts)


def decode_base64_image(
    text: str, field: str, max_bytes: int, max_pixels: int, mode: str = "RGB"
) -> np.ndarray:
    """Decode a base64 image upload into a uint8 array (H, W, 3) or (H, W) for mode 'L'."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) * 3 // 4 > max_bytes + 3:
        raise RequestError(field, f"upload is larger than the limit of {max_bytes} bytes")
    try:
        data = b64decode_strict(text)
    except (binascii.Error, ValueError):
        raise RequestError(field, "is not valid base64") from None
    if len(data) > max_bytes:
        raise RequestError(
            field, f"upload is {len(data)} bytes, over the limit of {max_bytes} bytes"
        )
    return decode_image_bytes(data, field, max_pixels, mode)


def decode_image_bytes(data: bytes, field: str, max_pixels: int, mode: str = "RGB") -> np.ndarray:
    """Decode PNG/JPEG/WebP bytes, refusing bombs and other formats."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_UPLOAD_FORMATS)
            if image.format not in ALLOWED_UPLOAD_FORMATS:
                raise RequestError(
                    field, f"format {image.format} is not allowed (PNG, JPEG or WebP)"
                )
            pixels = image.width * image.height
            if pixels > max_pixels:
                raise RequestError(
                    field,
                    f"image is {image.width}x{image.height} = {pixels} pixels, over the "
                    f"limit of {max_pixels} pixels (decompression bomb guard)",
                )
            image = ImageOps.exif_transpose(image)
            if mode == "RGB" and image.mode in ("RGBA", "LA", "P"):
                image = _flatten_on_white(image)
            return np.asarray(image.convert(mode))
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError(
            field, f"image has too many pixels, over the limit of {max_pixels} (decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise RequestError(field, "is not a decodable PNG, JPEG or WebP image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise RequestError(field, f"image data is corrupt ({exc})") from None


def _flatten_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def encode_image(
    pixels: np.ndarray,
    fmt: str,
    quality: int = 92,
    dpi: int = 300,
    metadata: ImageMetadata | None = None,
) -> bytes:
    """Encode a uint8 array as PNG, JPEG, WebP or TIFF bytes with the given DPI, carrying
    `metadata` (its run id and parameters, see `core.image_tags`) when given."""
    buffer = io.BytesIO()
    options: dict = {"dpi": (dpi, dpi)}
    if fmt in ("jpeg", "webp"):
        options["quality"] = quality
    if metadata is not None:
        options.update(pil_save_options(fmt, metadata))
    Image.fromarray(pixels).save(buffer, format=_PIL_FORMATS[fmt], **options)
    return buffer.getvalue()


def encode_base64(data: bytes) -> str:
    """Base64 text of bytes (for JSON responses)."""
    return base64.b64encode(data).decode("ascii")
