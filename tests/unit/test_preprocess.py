"""Reference-image and mask normalisation: orientation, alpha, fit, padding, determinism."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.errors import RequestError
from core.preprocess import normalise_image, normalise_mask

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def halves(width: int, height: int, left=RED, right=BLUE) -> Image.Image:
    """Left half one colour, right half another."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = left
    pixels[:, width // 2 :] = right
    return Image.fromarray(pixels)


def noisy(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(
        np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    )


def test_same_input_same_bytes() -> None:
    data = encode(noisy(97, 61))
    first = normalise_image(data, 128, 96)
    assert first.dtype == np.uint8 and first.shape == (96, 128, 3)
    assert normalise_image(data, 128, 96).tobytes() == first.tobytes()
    assert normalise_image(Image.open(io.BytesIO(data)), 128, 96).tobytes() == first.tobytes()
    mask = encode(noisy(97, 61).convert("L"))
    assert normalise_mask(mask, 128, 96).tobytes() == normalise_mask(mask, 128, 96).tobytes()


def test_exif_orientation_is_applied() -> None:
    image = halves(40, 20)  # red left, blue right, stored sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = normalise_image(encode(image, exif=exif), 20, 40)
    assert out.shape == (40, 20, 3)
    assert tuple(out[5, 10]) == RED and tuple(out[35, 10]) == BLUE  # left became top


def test_alpha_is_flattened_onto_white() -> None:
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[:, :4] = (255, 0, 0, 128)  # half-transparent red; the right half fully transparent
    out = normalise_image(encode(Image.fromarray(pixels, "RGBA")), 8, 8)
    assert (out[:, 4:] == 255).all()
    assert tuple(out[0, 0]) == (255, 127, 127)


def test_exact_aspect_is_scaled_without_padding() -> None:
    out = normalise_image(encode(halves(64, 32)), 128, 64)
    assert tuple(out[0, 0]) == RED and tuple(out[-1, -1]) == BLUE
    assert (out[:, :56] == RED).all() and (out[:, 72:] == BLUE).all()  # Lanczos rings between


def test_other_aspect_is_fitted_centred_with_a_blurred_border() -> None:
    stripes = np.zeros((32, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel columns: the worst case for a padded border
    out = normalise_image(encode(Image.fromarray(stripes)), 64, 64)
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out[16:48], stripes)  # the picture itself is untouched
    border = out[:12].astype(float)
    assert border.std() < stripes.std() / 4  # the padding continues the edge, softened
    assert abs(border.mean() - stripes.mean()) < 8


def test_mask_is_binary_and_by_luminance() -> None:
    grey = np.full((10, 20), 100, np.uint8)
    grey[:, 10:] = 200
    out = normalise_mask(encode(Image.fromarray(grey)), 20, 10)
    assert out.dtype == np.uint8 and out.shape == (10, 20)
    assert set(np.unique(out)) == {0, 255}
    assert (out[:, :10] == 0).all() and (out[:, 10:] == 255).all()
    colour = normalise_mask(encode(noisy(33, 17)), 64, 32)
    assert set(np.unique(colour)) <= {0, 255}


def test_mask_transparency_counts_as_not_masked() -> None:
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[:, :, :3] = 255  # white everywhere, opaque only on the right half
    pixels[:, 4:, 3] = 255
    out = normalise_mask(encode(Image.fromarray(pixels, "RGBA")), 8, 8)
    assert (out[:, :4] == 0).all() and (out[:, 4:] == 255).all()


def test_sixteen_bit_mask_is_not_clipped() -> None:
    deep = np.zeros((8, 8), np.uint16)
    deep[:, 4:] = 65535
    deep[:, 2:4] = 20000  # below half scale: not masked
    out = normalise_mask(encode(Image.fromarray(deep)), 8, 8)
    assert (out[:, :4] == 0).all() and (out[:, 4:] == 255).all()


def test_mask_stays_aligned_with_its_image() -> None:
    image = normalise_image(encode(halves(60, 30, left=WHITE, right=BLUE)), 64, 64)
    mask = normalise_mask(encode(halves(60, 30, left=WHITE, right=(0, 0, 0))), 64, 64)
    assert (mask[:16] == 0).all() and (mask[48:] == 0).all()  # padding is never repainted
    inside = mask == 255
    assert inside.sum() > 0.2 * mask.size
    assert image[inside][:, :2].min() >= 245  # white, give or take Lanczos ringing
    edges = [int(np.argmax(row < 128)) for row in (mask[32], image[32, :, 0])]
    assert edges[0] == edges[1] == 32  # both turn at the same column


def test_bad_input_names_the_field() -> None:
    with pytest.raises(RequestError) as caught:
        normalise_image(b"not an image", 64, 64, field="stages.layout.reference")
    assert caught.value.field == "stages.layout.reference"
    assert "not a readable image" in caught.value.message
    with pytest.raises(RequestError) as caught:
        normalise_mask(b"\x89PNG\r\n\x1a\n truncated", 64, 64)
    assert caught.value.field == "mask"
    with pytest.raises(RequestError) as caught:
        normalise_image(encode(halves(4, 4)), 0, 64)
    assert caught.value.field == "width"
