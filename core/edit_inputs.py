"""An OpenAI-style image edit's uploads as a render's `init_image` and `mask`.

OpenAI's Images API marks the area to edit with transparency: pixels of the mask
(or, with no mask, of the image itself) whose alpha is 0 are repainted. This
project's masks are the other way round and opaque: white (255) repaints, black
keeps. `edit_inputs` turns the first into the second, fits both to the output size
the way every reference is fitted (`core.preprocess`: scaled without cropping,
centred, the mask's padding kept), and hands back base64 PNGs for a
`RenderRequestBody`. Pure Pillow/numpy: no I/O, no Ray.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.errors import RequestError
from core.imaging import decode_image_bytes, encode_base64
from core.preprocess import MASK_THRESHOLD, normalise_image, normalise_mask

__all__ = ["EditInputs", "edit_area", "edit_inputs"]


@dataclass(frozen=True)
class EditInputs:
    """Base64 PNGs for `RenderRequestBody.init_image` / `.mask` (None: no area marked)."""

    init_image: str
    mask: str | None
    width: int
    height: int


def _read(data: bytes, field: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """An upload as RGBA uint8 (H, W, 4): formats, size and decompression bombs checked."""
    if not data:
        raise RequestError(field, "is empty; send a PNG, JPEG or WebP file")
    if len(data) > max_bytes:
        raise RequestError(
            field, f"upload is {len(data)} bytes, over the limit of {max_bytes} bytes"
        )
    return decode_image_bytes(data, field, max_pixels, mode="RGBA")


def edit_area(rgba: np.ndarray) -> np.ndarray:
    """OpenAI's convention to this project's: alpha below half (transparent) -> 255 (repaint)."""
    return np.where(rgba[..., 3] < MASK_THRESHOLD, 255, 0).astype(np.uint8)


def _png_base64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return encode_base64(buffer.getvalue())


def edit_inputs(
    image: bytes,
    mask: bytes | None,
    size: tuple[int, int] | None,
    max_bytes: int,
    max_pixels: int,
) -> EditInputs:
    """The render inputs of an edit; `size` (width, height) None keeps the image's size.

    A mask must be the image's size and mark some area (transparent pixels). Without a
    mask the image's own transparent pixels are the area, and an opaque image is edited
    as a whole (img2img, no mask). Raises `RequestError` naming `image` or `mask`.
    """
    rgba = _read(image, "image", max_bytes, max_pixels)
    height, width = rgba.shape[:2]
    area = None
    if mask is not None:
        marked = _read(mask, "mask", max_bytes, max_pixels)
        if marked.shape[:2] != (height, width):
            raise RequestError(
                "mask",
                f"is {marked.shape[1]}x{marked.shape[0]} but image is {width}x{height}; "
                "they must be the same size",
            )
        area = edit_area(marked)
        if not area.any():
            raise RequestError(
                "mask",
                "has no transparent pixels; transparent (alpha 0) pixels mark the area to edit",
            )
    elif (rgba[..., 3] < MASK_THRESHOLD).any():
        area = edit_area(rgba)
    out_w, out_h = size if size is not None else (width, height)
    fitted = normalise_image(Image.fromarray(rgba), out_w, out_h, field="image")
    fitted_mask = None
    if area is not None:
        fitted_mask = normalise_mask(Image.fromarray(area), out_w, out_h, field="mask")
    return EditInputs(
        init_image=_png_base64(fitted),
        mask=None if fitted_mask is None else _png_base64(fitted_mask),
        width=out_w,
        height=out_h,
    )
