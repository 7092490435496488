"""The official `openai` client against the Images API of a server this test starts.

The in-process API (real routes, the render path, the gate with keys on) is served by
uvicorn on 127.0.0.1 in a thread; the model call is a fake whose pixels come from the
seed, so two images of one request differ by seed, and which keeps every request it
was sent (the edit's init image and mask are checked there).
"""

from __future__ import annotations

import base64
import io
import socket
import threading
from urllib.parse import urlsplit

import httpx
import numpy as np
import openai
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from core.schemas import GenerateRequest, GenerateResult
from core.tenants import TenantLimits, add_key
from serve.api_app import api
from tests.api.inprocess import config_for, install
from tests.waiting import wait_until

SEEN: list[GenerateRequest] = []


async def seeded_render(model_name: str, request: GenerateRequest) -> GenerateResult:
    SEEN.append(request)
    rng = np.random.default_rng(request.seed)
    image = rng.integers(0, 256, (request.height, request.width, 3), dtype=np.uint8)
    return GenerateResult(image, request.seed, 0.001, 1, "fake-replica", ["0"])


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """(base URL, keys by tenant) of the API served on a free port; stopped after the test."""
    keys = tmp_path / "keys.yaml"
    tenants = {
        "acme": add_key(keys, "acme", TenantLimits()),
        "globex": add_key(keys, "globex", TenantLimits()),
        "slow": add_key(keys, "slow", TenantLimits(requests_per_minute=1)),
    }
    monkeypatch.setattr("tests.api.inprocess.flat_render", seeded_render)
    install(config_for(tmp_path / "store", {"keys_file": str(keys)}), monkeypatch)
    SEEN.clear()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout_s=30, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}", tenants
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop within 15 s"


def client_for(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)


def decoded(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def run_id_of(url: str) -> str:
    """The run id in a signed artifact link (`/v1/artifacts/renders/<id>/image.png?...`)."""
    return urlsplit(url).path.split("/")[-2]


def test_generate_two_images_as_base64_differing_by_seed(cluster):
    base, keys = cluster
    answer = client_for(base, keys["acme"]).images.generate(
        prompt="a lighthouse at dusk",
        n=2,
        size="64x48",
        response_format="b64_json",
        extra_body={"seed": 7},
    )
    assert answer.created > 0 and len(answer.data) == 2
    images = [decoded(item.b64_json) for item in answer.data]
    assert [image.size for image in images] == [(64, 48), (64, 48)]
    assert all(item.url is None and item.revised_prompt is None for item in answer.data)
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))
    assert sorted(request.seed for request in SEEN) == [7, 8]
    assert {request.mode for request in SEEN} == {"txt2img"}


def test_generate_urls_are_signed_links_and_runs_stay_with_their_tenant(cluster):
    base, keys = cluster
    answer = client_for(base, keys["acme"]).images.generate(
        prompt="a lighthouse", n=2, size="64x64", response_format="url", user="end-user-42"
    )
    assert [item.b64_json for item in answer.data] == [None, None]
    pixels = []
    for item in answer.data:
        fetched = httpx.get(item.url, timeout=30)  # no key: the signature is the pass
        assert fetched.status_code == 200, fetched.text
        image = Image.open(io.BytesIO(fetched.content))
        assert image.size == (64, 64)
        pixels.append(np.asarray(image))
        unsigned = item.url.split("?")[0]
        other = {"Authorization": f"Bearer {keys['globex']}"}
        assert httpx.get(unsigned, headers=other, timeout=30).status_code == 404
    assert not np.array_equal(*pixels)
    seeds = []
    for item in answer.data:
        run = f"{base}/v1/runs/{run_id_of(item.url)}"
        mine = httpx.get(run, headers={"Authorization": f"Bearer {keys['acme']}"}, timeout=30)
        assert mine.status_code == 200
        assert mine.json()["owner"] == "acme"
        assert mine.json()["params"]["user"] == "end-user-42"
        seeds.append(mine.json()["seed"])
        theirs = httpx.get(run, headers={"Authorization": f"Bearer {keys['globex']}"}, timeout=30)
        assert theirs.status_code == 404
    assert seeds[1] == seeds[0] + 1


def test_edit_with_a_mask_repaints_where_the_mask_is_transparent(cluster):
    base, keys = cluster
    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    picture[:, :, 2] = 200
    mask = np.full((64, 64, 4), 255, dtype=np.uint8)
    mask[:, :32, 3] = 0  # OpenAI's convention: transparent = the area to edit
    answer = client_for(base, keys["acme"]).images.edit(
        image=("picture.png", png(Image.fromarray(picture)), "image/png"),
        mask=("mask.png", png(Image.fromarray(mask)), "image/png"),
        prompt="a red door on the left",
        n=2,
        size="64x64",
        response_format="b64_json",
    )
    images = [decoded(item.b64_json) for item in answer.data]
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))
    assert len(SEEN) == 2
    for request in SEEN:
        assert request.mode == "inpaint"
        assert np.array_equal(request.init_image, picture)
        assert (request.mask[:, :32] == 255).all() and (request.mask[:, 32:] == 0).all()
    assert SEEN[0].seed != SEEN[1].seed


def test_edit_without_a_mask_uses_the_images_own_transparency(cluster):
    base, keys = cluster
    picture = np.full((48, 64, 4), 255, dtype=np.uint8)
    picture[:16, :, 3] = 0
    answer = client_for(base, keys["acme"]).images.edit(
        image=("picture.png", png(Image.fromarray(picture)), "image/png"),
        prompt="sky",
        response_format="url",
    )
    assert len(answer.data) == 1 and "sig=" in answer.data[0].url
    (request,) = SEEN
    assert (request.width, request.height) == (64, 48)  # no size: the image's own
    assert request.mode == "inpaint" and request.mask[:16].all() and not request.mask[16:].any()


def test_errors_come_in_openais_shape_as_the_clients_exceptions(cluster):
    base, keys = cluster
    client = client_for(base, keys["acme"])
    with pytest.raises(openai.UnprocessableEntityError) as bad_grid:
        client.images.generate(prompt="a cat", size="60x60")
    assert bad_grid.value.body["param"] == "size"
    assert bad_grid.value.body["type"] == "invalid_request_error"
    assert "multiple of 8" in bad_grid.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as large:
        client.images.generate(prompt="a cat", size="256x256")
    assert large.value.body["param"] == "size" and "/v1/renders" in large.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as over_limits:
        client.images.edit(
            image=("a.png", png(Image.new("RGB", (64, 64))), "image/png"),
            prompt="x",
            size="999999x999999",  # refused before an image of that size is made
        )
    assert (
        over_limits.value.body["param"] == "size" and "limits" in over_limits.value.body["message"]
    )
    with pytest.raises(openai.UnprocessableEntityError) as not_a_size:
        client.images.generate(prompt="a cat", size="big")
    assert not_a_size.value.body["param"] == "size"
    with pytest.raises(openai.UnprocessableEntityError) as too_many:
        client.images.generate(prompt="a cat", n=9)
    assert too_many.value.body["param"] == "n"
    with pytest.raises(openai.UnprocessableEntityError) as unknown:
        client.images.generate(prompt="a cat", model="dall-e-3")
    assert unknown.value.body["param"] == "model" and "tiny" in unknown.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as opaque:
        opaque_mask = png(Image.new("RGBA", (64, 64), (0, 0, 0, 255)))
        client.images.edit(
            image=("a.png", png(Image.new("RGB", (64, 64))), "image/png"),
            mask=("m.png", opaque_mask, "image/png"),
            prompt="x",
        )
    assert opaque.value.body["param"] == "mask"
    for error in (bad_grid, large, over_limits, not_a_size, too_many, unknown, opaque):
        assert set(error.value.body) == {"message", "type", "param", "code"}
        assert "Traceback" not in str(error.value.body) and "/tmp" not in str(error.value.body)
    assert SEEN == []  # nothing was rendered for a refused request


def test_a_wrong_key_and_a_key_past_its_rate_raise_the_clients_exceptions(cluster):
    base, keys = cluster
    with pytest.raises(openai.AuthenticationError) as wrong:
        client_for(base, "not-a-key").images.generate(prompt="a cat")
    assert wrong.value.body["code"] == "invalid_api_key" and wrong.value.body["param"] is None
    assert wrong.value.request_id.startswith("req_")  # the gate's X-Request-Id header
    slow = client_for(base, keys["slow"])
    slow.images.generate(prompt="a cat", size="64x64")
    with pytest.raises(openai.RateLimitError) as limited:
        slow.images.generate(prompt="a cat", size="64x64")
    assert limited.value.body["code"] == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"]
    other = httpx.post(f"{base}/v1/renders", json={"prompt": "x"}, timeout=30)
    assert other.status_code == 401 and other.json()["error"]["field"] == "authorization"


def test_an_unexpected_failure_is_a_500_in_openais_shape_without_its_trace(tmp_path, monkeypatch):
    renders = install(config_for(tmp_path), monkeypatch)

    async def broken(*args, **kwargs):
        raise RuntimeError("/secret/path exploded")

    monkeypatch.setattr(renders, "render_single", broken)
    client = TestClient(api, raise_server_exceptions=False)
    answer = client.post("/v1/images/generations", json={"prompt": "a cat"})
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "server_error"
    assert "secret" not in answer.text and answer.headers["x-request-id"].startswith("req_")
    other = client.post("/v1/renders", json={"prompt": "a cat", "width": "wide"})
    assert set(other.json()["error"]) == {"field", "message"}  # the rest keeps its shape
