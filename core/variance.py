"""Layout variance: how much a model's composition moves from one seed to the next.

Render the same prompt with N seeds and compare the images' coarse luminance:
each image becomes a small grid of mean luminance values (an area average, so
fine texture and noise cancel out and only the layout - where the light and
dark masses sit - remains), and the figure is the mean absolute difference over
every pair of images. 0 means every seed gives the same layout; 1 is the
largest possible difference (black against white everywhere). Independent
uniform noise scores near 0, since it averages to mid-grey in every cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from PIL import Image

__all__ = ["GRID", "layout_variance", "luminance_grid"]

GRID = 16  # cells per side of the downsampled luminance
_REC709 = np.array([0.2126, 0.7152, 0.0722], np.float32)


def luminance_grid(image: np.ndarray, grid: int = GRID) -> np.ndarray:
    """Rec. 709 luminance in [0, 1], area-averaged to a grid x grid float32 array."""
    if image.ndim == 2:
        luma = image.astype(np.float32) / 255.0
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        luma = image[..., :3].astype(np.float32) @ _REC709 / 255.0
    else:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    small = Image.fromarray(np.ascontiguousarray(luma)).resize((grid, grid), Image.Resampling.BOX)
    return np.asarray(small, np.float32)


def layout_variance(images: Sequence[np.ndarray], grid: int = GRID) -> float:
    """Mean pairwise absolute difference of the images' luminance grids, in [0, 1].

    The images are renders of one prompt with different seeds, all the same size.
    """
    if len(images) < 2:
        raise ValueError(f"layout variance needs at least 2 images, got {len(images)}")
    shapes = {image.shape[:2] for image in images}
    if len(shapes) > 1:
        raise ValueError(f"images differ in size: {sorted(shapes)}")
    grids = [luminance_grid(image, grid) for image in images]
    pairs = [float(np.abs(a - b).mean()) for a, b in combinations(grids, 2)]
    return float(np.clip(np.mean(pairs), 0.0, 1.0))
