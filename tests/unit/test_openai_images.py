"""The pure parts of the OpenAI Images API: an edit's uploads and the error shape."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from core.edit_inputs import edit_inputs
from core.errors import RequestError
from serve.routes.openai_images import openai_error

LIMITS = (2**20, 10**6)  # max bytes, max pixels


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels_of(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def test_a_transparent_area_of_the_mask_becomes_white_repaint():
    image = np.full((32, 48, 3), 90, dtype=np.uint8)
    mask = np.full((32, 48, 4), 255, dtype=np.uint8)
    mask[8:16, 8:24, 3] = 0
    got = edit_inputs(png(image), png(mask), None, *LIMITS)
    assert (got.width, got.height) == (48, 32)
    assert np.array_equal(pixels_of(got.init_image), image)
    repaint = pixels_of(got.mask)
    assert (repaint[8:16, 8:24] == 255).all() and repaint.sum() == 255 * 8 * 16


def test_the_mask_is_fitted_with_the_image_to_the_size_asked():
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    mask = np.zeros((32, 64, 4), dtype=np.uint8)  # all transparent: edit everything
    got = edit_inputs(png(image), png(mask), (64, 64), *LIMITS)
    repaint = pixels_of(got.mask)
    assert repaint.shape == (64, 64) and pixels_of(got.init_image).shape == (64, 64, 3)
    assert (repaint[16:48] == 255).all() and not repaint[:16].any() and not repaint[48:].any()


def test_an_opaque_image_without_a_mask_is_edited_whole():
    got = edit_inputs(png(np.zeros((16, 16, 3), dtype=np.uint8)), None, None, *LIMITS)
    assert got.mask is None


@pytest.mark.parametrize(
    ("image", "mask", "field", "words"),
    [
        (np.zeros((16, 16, 3), np.uint8), np.zeros((8, 8, 4), np.uint8), "mask", "same size"),
        (np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 4), 255, np.uint8), "mask", "alpha"),
    ],
)
def test_a_mask_that_cannot_be_used_names_the_mask(image, mask, field, words):
    with pytest.raises(RequestError) as refused:
        edit_inputs(png(image), png(mask), None, *LIMITS)
    assert refused.value.field == field and words in refused.value.message


def test_uploads_that_are_not_images_or_too_large_name_their_field():
    with pytest.raises(RequestError) as not_image:
        edit_inputs(b"GIF89a....", None, None, *LIMITS)
    assert not_image.value.field == "image"
    with pytest.raises(RequestError) as empty:
        edit_inputs(png(np.zeros((8, 8, 3), np.uint8)), b"", None, *LIMITS)
    assert empty.value.field == "mask"
    with pytest.raises(RequestError) as large:
        edit_inputs(png(np.zeros((8, 8, 3), np.uint8)), None, None, 10, 10**6)
    assert large.value.field == "image" and "over the limit" in large.value.message


def test_this_apis_errors_read_as_openais():
    raw = json.dumps({"error": {"field": "width", "message": "width: must be a multiple of 8"}})
    assert openai_error(422, raw.encode()) == {
        "error": {
            "message": "size: width: must be a multiple of 8",
            "type": "invalid_request_error",
            "param": "size",
            "code": None,
        }
    }
    gate = json.dumps({"error": {"field": "authorization", "message": "invalid API key"}})
    assert openai_error(401, gate.encode())["error"]["code"] == "invalid_api_key"
    limited = openai_error(429, b'{"error": {"field": "requests_per_minute", "message": "m"}}')
    assert limited["error"]["type"] == "rate_limit_error" and limited["error"]["param"] is None
    assert openai_error(503, b"not json")["error"] == {
        "message": "Service Unavailable",
        "type": "server_error",
        "param": None,
        "code": "overloaded",
    }
