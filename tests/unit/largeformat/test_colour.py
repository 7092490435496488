import numpy as np
import pytest
from PIL import Image

from core.largeformat.colour import match_low_frequency


def _smooth(height, width, seed):
    """Colour varying over about 64 px: low frequencies for the default scale of 16."""
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 196, (height // 64 + 1, width // 64 + 1, 3), np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def _block_means(image, block=16):
    h, w, c = image.shape
    return image.reshape(h // block, block, w // block, block, c).mean(axis=(1, 3))


def test_matching_a_tile_to_itself_changes_nothing():
    tile = _smooth(128, 192, seed=1)
    assert np.array_equal(match_low_frequency(tile, tile), tile)


def test_a_colour_shifted_tile_is_brought_back_to_the_reference():
    reference = _smooth(128, 128, seed=2)
    shifted = (reference.astype(np.int16) + np.array([25, -15, 10])).astype(np.uint8)
    matched = match_low_frequency(shifted, reference)
    assert matched.dtype == np.uint8 and matched.shape == reference.shape
    assert np.abs(matched.astype(int) - reference).max() <= 1


def test_low_frequencies_come_from_the_reference_and_detail_from_the_tile():
    reference = _smooth(256, 256, seed=3)
    base = _smooth(256, 256, seed=4)
    checker = ((np.indices((256, 256)).sum(axis=0) % 2) * 40 - 20)[:, :, None]
    tile = (base.astype(np.int16) + checker).astype(np.uint8)
    matched = match_low_frequency(tile, reference, scale=16)

    colour_error = np.abs(_block_means(matched.astype(float)) - _block_means(reference)).mean()
    before = np.abs(_block_means(tile.astype(float)) - _block_means(reference)).mean()
    assert colour_error < 3.0 and colour_error < before / 10
    detail = matched.astype(float) - reference
    assert np.corrcoef(detail.ravel(), np.broadcast_to(checker, detail.shape).ravel())[0, 1] > 0.95


def test_matching_is_deterministic():
    tile, reference = _smooth(96, 160, seed=5), _smooth(96, 160, seed=6)
    assert np.array_equal(
        match_low_frequency(tile, reference), match_low_frequency(tile, reference)
    )


@pytest.mark.parametrize(
    ("tile_shape", "reference_shape"), [((64, 64, 3), (64, 32, 3)), ((64, 64), (64, 64))]
)
def test_shape_mismatch_is_rejected(tile_shape, reference_shape):
    with pytest.raises(ValueError, match="shape"):
        match_low_frequency(np.zeros(tile_shape, np.uint8), np.zeros(reference_shape, np.uint8))
