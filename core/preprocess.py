"""Deterministic preprocessing of reference images and masks for a stage.

Both are fitted the same way, so a mask stays aligned with its image: EXIF
orientation is applied, the picture is scaled with Lanczos to fit inside the
stage size without cropping (aspect ratio kept), and centred. Fit-with-padding
rather than cover-and-crop, because a reference must not lose its edges
(logos, text, a product at the border). In a reference image the padding
continues the picture's edge pixels under a light Gaussian blur, so the model
sees a soft extension rather than a hard frame; in a mask the padding is 0
(nothing to repaint there).

Everything here is integer Pillow/numpy work: the same input gives the same
bytes on every run (for a given Pillow version).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from core.errors import RequestError
from core.imaging import ALLOWED_UPLOAD_FORMATS

__all__ = ["normalise_image", "normalise_mask"]

PAD_BLUR_FRACTION = 0.01  # blur radius of a padded border, as a fraction of the shorter side
MASK_THRESHOLD = 128  # resized mask values at or above this become 255


def _open(data: bytes | Image.Image, field: str) -> Image.Image:
    """Decode (when bytes), apply the EXIF orientation, bring 16-bit greyscale to 8 bits."""
    try:
        if isinstance(data, Image.Image):
            image = data
        else:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_UPLOAD_FORMATS)
            image.load()
        image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise RequestError(field, f"not a readable image ({exc})") from exc
    if image.mode.startswith("I;16"):  # 16-bit greyscale: keep the top byte (convert() clips)
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    return image


def _check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value < 1:
            raise RequestError(name, f"must be a positive number of pixels, got {value}")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _fit_box(size: tuple[int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """(w, h, left, top) of `size` scaled to fit inside width x height, centred."""
    src_w, src_h = size
    scale = min(width / src_w, height / src_h)
    fit_w = min(width, max(1, round(src_w * scale)))
    fit_h = min(height, max(1, round(src_h * scale)))
    return fit_w, fit_h, (width - fit_w) // 2, (height - fit_h) // 2


def _pad_widths(box: tuple[int, int, int, int], width: int, height: int):
    fit_w, fit_h, left, top = box
    return (top, height - fit_h - top), (left, width - fit_w - left)


def normalise_image(
    data: bytes | Image.Image, width: int, height: int, *, field: str = "image"
) -> np.ndarray:
    """A reference image as uint8 RGB of shape (height, width, 3), fitted and padded.

    Alpha is flattened onto white. `field` names the input in a `RequestError`.
    """
    _check_size(width, height)
    image = _open(data, field)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    image = image.convert("RGB")
    box = _fit_box(image.size, width, height)
    fitted = np.asarray(image.resize(box[:2], Image.Resampling.LANCZOS))
    if box[:2] == (width, height):
        return fitted.copy()
    rows, cols = _pad_widths(box, width, height)
    padded = np.pad(fitted, (rows, cols, (0, 0)), mode="edge")
    radius = max(1.0, PAD_BLUR_FRACTION * min(width, height))
    blurred = np.asarray(Image.fromarray(padded).filter(ImageFilter.GaussianBlur(radius)))
    out = blurred.copy()
    fit_w, fit_h, left, top = box
    out[top : top + fit_h, left : left + fit_w] = fitted
    return out


def normalise_mask(
    data: bytes | Image.Image, width: int, height: int, *, field: str = "mask"
) -> np.ndarray:
    """A mask as uint8 of shape (height, width) holding only 0 and 255 (255: repaint).

    Fitted like `normalise_image`. Colour masks are read by luminance; transparent
    pixels count as 0 (a white-on-transparent mask works as drawn).
    """
    _check_size(width, height)
    image = _open(data, field)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "black"), rgba)
    grey = image.convert("L")
    box = _fit_box(grey.size, width, height)
    fitted = np.asarray(grey.resize(box[:2], Image.Resampling.LANCZOS))
    binary = np.where(fitted >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
    rows, cols = _pad_widths(box, width, height)
    return np.pad(binary, (rows, cols), constant_values=0)
