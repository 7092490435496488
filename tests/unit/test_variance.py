"""Layout variance: 0 for one layout, 1 for black against white, texture ignored."""

from __future__ import annotations

import numpy as np
import pytest

from core.variance import layout_variance


def layout(dark_left: bool, seed: int) -> np.ndarray:
    """A 64x64 image, dark on one half, with fine noise that should not count."""
    rng = np.random.default_rng(seed)
    image = np.full((64, 64, 3), 200, np.int16)
    dark = slice(0, 32) if dark_left else slice(32, 64)
    image[:, dark] = 40
    image += rng.integers(-20, 21, image.shape, dtype=np.int16)
    return image.clip(0, 255).astype(np.uint8)


def test_identical_images_have_no_variance_and_opposites_have_one():
    image = layout(True, 0)
    assert layout_variance([image, image, image]) == 0.0
    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    assert layout_variance([black, white]) == pytest.approx(1.0)


def test_a_moved_layout_scores_higher_than_new_texture():
    same_layout = layout_variance([layout(True, seed) for seed in range(4)])
    moved = layout_variance([layout(seed % 2 == 0, seed) for seed in range(4)])
    assert same_layout < 0.02
    assert moved > 0.2
    assert 0.0 <= same_layout < moved <= 1.0


def test_needs_two_images_of_one_size():
    with pytest.raises(ValueError, match="at least 2"):
        layout_variance([layout(True, 0)])
    with pytest.raises(ValueError, match="differ in size"):
        layout_variance([layout(True, 0), np.zeros((32, 64, 3), np.uint8)])
