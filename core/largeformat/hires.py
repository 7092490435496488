"""Pure geometry of the hires path: base size, per-tile upscaled crops, padding.

The upscaled base is never materialised at the target size: each tile's crop
is resampled directly from the small base with Pillow's `box` argument, which
gives the same Lanczos filter as resizing the whole image and cropping.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from core.largeformat.tiling import Tile


def base_size(width: int, height: int, native: int, align: int) -> tuple[int, int]:
    """The base render's size: the target's aspect ratio at about native² pixels."""
    scale = math.sqrt(native * native / (width * height))
    base_w = max(align, round(width * scale / align) * align)
    base_h = max(align, round(height * scale / align) * align)
    return min(base_w, _ceil_to(width, align)), min(base_h, _ceil_to(height, align))


def _ceil_to(value: int, align: int) -> int:
    return -(-value // align) * align


def upscaled_crop(base: Image.Image, width: int, height: int, tile: Tile) -> np.ndarray:
    """Pixels of `tile` from `base` Lanczos-upscaled to width x height (uint8, h x w x 3)."""
    sx, sy = base.width / width, base.height / height
    box = (tile.x * sx, tile.y * sy, (tile.x + tile.w) * sx, (tile.y + tile.h) * sy)
    return np.asarray(base.resize((tile.w, tile.h), Image.Resampling.LANCZOS, box=box))


def pad_to_render_size(pixels: np.ndarray, tile: Tile) -> np.ndarray:
    """Reflect-pad a tile's input up to the size the model renders (latent-aligned)."""
    pad_h, pad_w = tile.render_h - pixels.shape[0], tile.render_w - pixels.shape[1]
    if pad_h == 0 and pad_w == 0:
        return pixels
    mode = "reflect" if min(pixels.shape[:2]) > max(pad_h, pad_w) else "edge"
    return np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)


def crop_to_tile(pixels: np.ndarray, tile: Tile) -> np.ndarray:
    """Cut a rendered tile back to its canvas size."""
    return pixels[: tile.h, : tile.w]
