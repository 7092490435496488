"""The render service end to end: real Ray, real Serve, real HTTP, tiny models."""

from __future__ import annotations

import base64
import contextlib
import io
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import ray
from PIL import Image
from ray import serve

from actors.job_supervisor import supervisor
from core.config import APP_NAME, ClusterConfig, deployment_name
from core.schemas import GenerateRequest
from tests.waiting import wait_until


def png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


GRADIENT = np.dstack([np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))] * 3)
MASK = np.zeros((64, 64), np.uint8)
MASK[16:48, 16:48] = 255


@pytest.fixture(scope="module", autouse=True)
def models_serving(cluster) -> None:
    """Each model runs a replica before this module's renders (the module before may have
    redeployed the application: its replicas could still be starting)."""

    def running() -> dict[str, int]:
        deployments = serve.status().applications[APP_NAME].deployments
        return {
            name: deployments[deployment_name(name)].replica_states.get("RUNNING", 0)
            for name in cluster.config.models
        }

    wait_until(running, lambda counts: all(counts.values()), timeout_s=180, what="every model")


def rendered(http: httpx.Client, body: dict) -> dict:
    """POST a render that must succeed; its view (the answer's text names any failure)."""
    response = http.post("/v1/renders", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_health_and_models(cluster):
    with cluster.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        listing = http.get("/v1/models").json()
    assert {m["name"] for m in listing["models"]} == {"quality", "fast", "scenes", "upscaler"}
    assert listing["styles"] == {"photoreal": "quality", "typography": "quality", "draft": "fast"}
    assert listing["limits"]["max_steps"] == 50
    by_name = {m["name"]: m for m in listing["models"]}
    loaded = by_name["quality"]["loaded"]  # asked of a running replica
    warmup = loaded.pop("warmup")  # rendered before the replica reported healthy
    assert (warmup["width"], warmup["height"], warmup["steps"]) == (256, 256, 2)
    assert warmup["seconds"] > 0
    assert loaded == {
        "pipelines": {
            "txt2img": "StableDiffusionPipeline",
            "img2img": "StableDiffusionImg2ImgPipeline",
            "inpaint": "StableDiffusionInpaintPipeline",
        },
        "dtype": "float32",
        "device": "cpu",
        "components": {"unet": "cpu", "vae": "cpu", "text_encoder": "cpu"},
        "memory": ["to_device"],
        "loras": [],
        "fused_loras": [],
    }
    assert "loaded" not in by_name["upscaler"]  # not a diffusion model


@pytest.mark.parametrize("model", ["quality", "fast"])
@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_each_model_and_mode_renders_and_is_reproducible(cluster, model, mode):
    body = {"prompt": "a harbour at dawn", "model": model, "width": 64, "height": 64, "seed": 42}
    if mode != "txt2img":
        body["init_image"] = png_b64(GRADIENT)
        body["strength"] = 0.6
    if mode == "inpaint":
        body["mask"] = png_b64(MASK)
    with cluster.client() as http:
        first = rendered(http, body)
        again = rendered(http, body)
        other = rendered(http, {**body, "seed": 43})
    assert (first["model"], first["mode"], first["seed"]) == (model, mode, 42)
    image = decode(first["image_base64"])
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 0  # not a blank image
    # the same pixels (the files differ only in the run id they carry)
    assert np.array_equal(image, decode(again["image_base64"]))
    assert not np.array_equal(image, decode(other["image_base64"]))
    assert first["id"] != again["id"]
    if mode == "inpaint":  # the mask is used: another mask gives another image
        other_mask = np.zeros_like(MASK)
        other_mask[:, :32] = 255
        with cluster.client() as http:
            moved = rendered(http, {**body, "mask": png_b64(other_mask)})
        assert not np.array_equal(decode(moved["image_base64"]), image)


def test_raw_image_response_with_headers_and_chosen_seed(cluster):
    with cluster.client() as http:
        response = http.post(
            "/v1/renders",
            json={"prompt": "poster", "style": "draft", "width": 64, "height": 128},
            headers={"Accept": "image/webp"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    image = Image.open(io.BytesIO(response.content))
    assert (image.format, image.size) == ("WEBP", (64, 128))
    assert int(response.headers["x-seed"]) >= 0 and response.headers["x-render-id"]


def test_style_routes_to_its_model(cluster):
    base = {"prompt": "same prompt", "width": 64, "height": 64, "seed": 7}
    with cluster.client() as http:
        by_style = {
            s: rendered(http, {**base, "style": s}) for s in ("photoreal", "typography", "draft")
        }
        default = rendered(http, base)
        by_model = rendered(http, {**base, "model": "fast", "steps": 2})
    assert {s: r["model"] for s, r in by_style.items()} == {
        "photoreal": "quality",
        "typography": "quality",
        "draft": "fast",
    }
    assert default["model"] == "quality"
    pixels = {s: decode(r["image_base64"]) for s, r in by_style.items()}
    assert np.array_equal(pixels["photoreal"], pixels["typography"])
    assert np.array_equal(pixels["draft"], decode(by_model["image_base64"]))
    assert not np.array_equal(pixels["draft"], pixels["photoreal"])


def test_handle_renders_each_mode_directly(cluster):
    handle = serve.get_deployment_handle(deployment_name("fast"), app_name=APP_NAME)
    txt = handle.render.remote(
        GenerateRequest(prompt="x", width=64, height=64, steps=2, guidance=3.0, seed=1)
    ).result()
    img = handle.render.remote(
        GenerateRequest(
            prompt="x",
            width=64,
            height=64,
            steps=2,
            guidance=3.0,
            seed=1,
            mode="img2img",
            init_image=GRADIENT,
            strength=0.5,
        )
    ).result()
    inp = handle.render.remote(
        GenerateRequest(
            prompt="x",
            width=64,
            height=64,
            steps=2,
            guidance=3.0,
            seed=1,
            mode="inpaint",
            init_image=GRADIENT,
            mask=MASK,
        )
    ).result()
    for result in (txt, img, inp):
        assert result.image.shape == (64, 64, 3) and result.seed == 1
    assert not np.array_equal(txt.image, img.image)


def test_concurrent_load_scales_out_with_one_logical_gpu_per_replica(cluster):
    body = {"prompt": "load", "model": "quality", "width": 192, "height": 192, "steps": 4}

    def running() -> int:
        states = serve.status().applications[APP_NAME].deployments[deployment_name("quality")]
        return states.replica_states.get("RUNNING", 0)

    # Load is kept up until the autoscaler reacts (or a generous deadline passes), so the
    # test does not depend on how fast this machine renders a fixed number of requests.
    stop = threading.Event()
    statuses: list[int] = []
    refusals: list[str] = []

    def keep_posting(worker: int) -> None:
        with cluster.client() as http:
            seed = worker * 1000
            while not stop.is_set():
                response = http.post("/v1/renders", json={**body, "seed": seed})
                statuses.append(response.status_code)
                if response.status_code != 200:
                    refusals.append(response.text)
                seed += 1

    with ThreadPoolExecutor(12) as pool:
        workers = [pool.submit(keep_posting, i) for i in range(12)]
        try:
            peak = wait_until(
                running,
                lambda count: count > 1,
                timeout_s=120,
                what="the autoscaler to run more than one quality replica under load",
                describe=lambda count: (
                    f"{count} running; answers so far: {sorted(Counter(statuses).items())}"
                ),
            )
        finally:
            stop.set()
            for worker in workers:
                worker.result()
    assert statuses and set(statuses) == {200}, refusals[:3]
    assert peak > 1  # the autoscaler went above one replica under the load
    replicas = max(running(), 1)
    handle = serve.get_deployment_handle(deployment_name("quality"), app_name=APP_NAME)
    request = GenerateRequest(prompt="probe", width=64, height=64, steps=1, guidance=1.0, seed=0)
    results = [handle.render.remote(request) for _ in range(6 * replicas)]
    gpus_by_replica = {r.replica: tuple(r.gpu_ids) for r in (x.result() for x in results)}
    assert len(gpus_by_replica) > 1
    assert all(len(ids) == 1 for ids in gpus_by_replica.values())
    assert len(set(gpus_by_replica.values())) == len(gpus_by_replica)  # no GPU shared


def test_status_reports_replicas_and_queue(cluster):
    with cluster.client() as http:
        report = http.get("/v1/status").json()
    rows = {row["name"]: row for row in report["deployments"]}
    assert report["status"] == "RUNNING"
    assert set(rows) == {"ingress", "model-quality", "model-fast", "model-scenes", "model-upscaler"}
    assert rows["model-fast"]["replicas_running"] >= 1
    assert rows["model-fast"]["replicas_target"] >= 1
    assert rows["model-fast"]["in_flight"] == 0


BOMB = Image.new("L", (12000, 12000))  # 144 Mpx of zeros: tiny as PNG, huge decoded


def _b64_of(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ({"width": 0}, "width", "at least 8"),
        ({"height": -64}, "height", "at least 8"),
        ({"width": 40000}, "width", "at most 32768"),
        ({"width": 100}, "width", "multiple of 8"),
        ({"width": 32768, "height": 32768}, "width", "over the limit of 268435456"),
        ({"steps": 0}, "steps", "between 1 and 50"),
        ({"steps": 500}, "steps", "between 1 and 50"),
        ({"model": "nope"}, "model", "'nope' is not one of"),
        ({"model": "upscaler"}, "model", "is an upscaler"),
        ({"style": "baroque"}, "style", "'baroque' is not one of"),
        ({"init_image": "not base64!"}, "init_image", "not valid base64"),
        (
            {"init_image": base64.b64encode(b"plain text, not an image").decode()},
            "init_image",
            "not a decodable",
        ),
        (
            {"init_image": _b64_of(Image.new("RGB", (64, 64)), "GIF")},
            "init_image",
            "not a decodable PNG, JPEG or WebP image",  # GIF is not on the allow-list
        ),
        (
            {"init_image": base64.b64encode(b"\x89PNG" + b"0" * (17 * 2**20)).decode()},
            "init_image",
            "larger than the limit",
        ),
        (
            {"init_image": _b64_of(BOMB), "width": None, "height": None},
            "init_image",
            "decompression bomb",
        ),
        (
            {"init_image": png_b64(GRADIENT), "mask": png_b64(np.zeros((32, 32), np.uint8))},
            "mask",
            "same size",
        ),
        ({"mask": png_b64(MASK)}, "mask", "needs an init_image"),
        ({"prompt": ""}, "prompt", "at least 1 character"),
        ({"prompt": "x" * 1001}, "prompt", "over the limit of 1000"),
        ({"format": "gif"}, "format", "png"),
        ({"unknown": 1}, "unknown", "Extra inputs"),
    ],
)
def test_invalid_input_is_422_naming_the_field(cluster, patch, field, fragment):
    body = {"prompt": "x", "width": 64, "height": 64, **patch}
    body = {k: v for k, v in body.items() if v is not None}
    with cluster.client() as http:
        response = http.post("/v1/renders", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert fragment in error["message"]


def test_malformed_json_is_422_not_500(cluster):
    with cluster.client() as http:
        response = http.post(
            "/v1/renders", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    assert "Traceback" not in response.text


def test_full_queue_answers_503_with_retry_after(cluster):
    from serve.app import application

    models = {
        "quality": cluster.config.models["quality"].model_copy(
            update={
                "max_ongoing_requests": 1,
                "max_queued_requests": 1,
                "autoscaling": cluster.config.models["quality"].autoscaling.model_copy(
                    update={"min_replicas": 1, "max_replicas": 1}
                ),
            }
        )
    }
    data = cluster.config.model_dump(mode="json")
    data.update(
        models={"quality": models["quality"].model_dump(mode="json")},
        styles={},
        default_style=None,
        pipelines={},
    )
    tight = ClusterConfig.model_validate(data)
    serve.run(application(tight), name="backpressure", route_prefix="/bp")
    try:
        body = {"prompt": "slow", "width": 256, "height": 256, "steps": 8}
        with cluster.client() as http, ThreadPoolExecutor(10) as pool:
            responses = list(
                pool.map(lambda i: http.post("/bp/v1/renders", json={**body, "seed": i}), range(10))
            )
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 503 in codes, codes
        assert set(codes) == {200, 503}
        rejected = next(r for r in responses if r.status_code == 503)
        assert rejected.headers["retry-after"] == "1"
        assert "at capacity" in rejected.json()["error"]["message"]
        # The second application has a supervisor of its own: ours keeps our config.
        holders = [supervisor(app).holder.remote() for app in ("backpressure", APP_NAME)]
        theirs, ours = ray.get(holders, timeout=30)
        assert theirs != ours
    finally:
        serve.delete("backpressure")
        with contextlib.suppress(ValueError):
            ray.kill(supervisor("backpressure"), no_restart=True)
        time.sleep(0.5)


@ray.remote(num_cpus=0)
def _proxy_timeouts() -> tuple[float, float]:
    from ray.serve._private import constants

    return constants.PROXY_READY_CHECK_TIMEOUT_S, constants.PROXY_HEALTH_CHECK_TIMEOUT_S


def test_the_embedded_clusters_processes_give_a_slow_proxy_time_to_start(cluster):
    """Serve's 5 s default killed proxies that a busy 2-core machine started more slowly,
    and `serve.start` failed with their ActorDiedError."""
    assert ray.get(_proxy_timeouts.remote(), timeout=60) == (60.0, 30.0)
