"""The official `openai` client against the shared cluster (real Serve, the tiny model).

The in-process tests (tests/api/test_openai_images.py) cover keys, tenants and every
error; this checks the two routes as Serve serves them: the app Serve pickles, its
middleware, multipart uploads and renders on the model's replicas.
"""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.unit.test_image_metadata import read_metadata


@pytest.fixture
def client(cluster) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="unused: keys are off", timeout=300)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_generate_two_images_both_ways_on_the_cluster(client):
    both = client.images.generate(
        prompt="a lighthouse", model="quality", n=2, size="256x128",
        response_format="b64_json", extra_body={"seed": 3},
    )  # fmt: skip
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(i.b64_json)))) for i in both.data]
    assert [image.shape for image in images] == [(128, 256, 3), (128, 256, 3)]
    assert not np.array_equal(images[0], images[1])  # seeds 3 and 4
    linked = client.images.generate(
        prompt="a lighthouse", model="quality", n=1, size="256x128", response_format="url",
        extra_body={"seed": 3},
    )  # fmt: skip
    fetched = httpx.get(linked.data[0].url, timeout=60)
    assert fetched.status_code == 200
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(fetched.content))), images[0])
    assert read_metadata(fetched.content)["parameters"].startswith("a lighthouse")


def test_edit_with_a_mask_on_the_cluster(client):
    picture = np.full((128, 128, 3), 90, dtype=np.uint8)
    mask = np.full((128, 128, 4), 255, dtype=np.uint8)
    mask[32:96, 32:96, 3] = 0  # transparent: repaint here
    edited = client.images.edit(
        image=("picture.png", _png(picture), "image/png"),
        mask=("mask.png", _png(mask), "image/png"),
        prompt="a red door", model="quality", n=1, response_format="b64_json",
    )  # fmt: skip
    result = np.asarray(Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json))))
    assert result.shape == (128, 128, 3)
    change = np.abs(result.astype(int) - picture.astype(int)).mean(axis=2)
    assert change[48:80, 48:80].mean() > change[:16, :16].mean()  # repainted inside the mask
    with pytest.raises(openai.UnprocessableEntityError, match="size"):
        client.images.generate(prompt="x", model="quality", size="250x128")
