"""Large-format renders through the tile router: fan-out, determinism, failures, API.

The module redeploys the shared app with the `quality` model (then the `upscaler`) at a
fixed number of replicas, first 1 and then 4, beside the other models (the cluster's
logical GPUs hold them all), and restores the original app at the end: a change of
replica count is applied to the running replicas, and a redeploy of the same config
keeps them (`serve.deployment_version`), so tests that share a config follow each other.
"""

from __future__ import annotations

from io import BytesIO

import httpx
import numpy as np
import pytest
import ray
from PIL import Image
from ray import serve

from core.config import APP_NAME, ClusterConfig
from serve.app import application
from serve.local_cluster import wait_running
from tests.integration.test_render_service import png_b64
from tests.unit.test_upscaler import psnr, scene
from tests.waiting import wait_until

JOB = {
    "prompt": "a harbour town",
    "model": "quality",
    "width": 768,
    "height": 512,
    "seed": 11,
    "steps": 4,
}


def deploy_fixed(config: ClusterConfig, name: str, replicas: int, **model_updates) -> None:
    """Redeploy the app with model `name` at a fixed number of replicas (and
    `model_updates`), the other models as configured."""
    data = config.model_dump(mode="json")
    model = data["models"][name]
    model["autoscaling"].update(min_replicas=replicas, max_replicas=replicas)
    model.update(model_updates)
    fixed = ClusterConfig.model_validate(data)
    serve.run(application(fixed), name=APP_NAME, route_prefix="/", blocking=False)
    wait_running()
    wait_until(
        lambda: serve.status().applications[APP_NAME].deployments[f"model-{name}"].replica_states,
        lambda states: states == {"RUNNING": replicas},
        timeout_s=120,
        interval_s=0.5,
        what=f"model-{name} to run exactly {replicas} replica(s)",
    )


def deploy_quality(config: ClusterConfig, replicas: int, **model_updates) -> None:
    deploy_fixed(config, "quality", replicas, **model_updates)


@pytest.fixture(scope="module")
def redeployed(cluster):
    yield cluster
    serve.run(application(cluster.config), name=APP_NAME, route_prefix="/", blocking=False)
    wait_running()


def render_large(http: httpx.Client, body: dict) -> tuple[dict, np.ndarray]:
    response = http.post("/v1/renders", json=body, timeout=600)
    assert response.status_code == 200, response.text
    view = response.json()
    image = http.get(view["result"]["url"])
    assert image.status_code == 200
    return view, np.asarray(Image.open(BytesIO(image.content)))


REFERENCE: dict[str, np.ndarray] = {}


def test_bytes_identical_on_one_and_four_replicas(redeployed):
    deploy_quality(redeployed.config, 1)
    with redeployed.client() as http:
        one_view, one = render_large(http, JOB)
    deploy_quality(redeployed.config, 4)
    with redeployed.client() as http:
        four_view, four = render_large(http, JOB)
    assert one.shape == four.shape == (512, 768, 3)
    assert one_view["result"]["metrics"]["replicas_used"] == 1
    assert four_view["result"]["metrics"]["replicas_used"] > 1
    assert np.array_equal(one, four)
    REFERENCE["image"] = one


def quality_replica_actors() -> list[dict[str, str]]:
    """The named actors (name, namespace) of the `quality` deployment's replicas."""
    prefix = f"SERVE_REPLICA::{APP_NAME}#model-quality#"
    listed = ray.util.list_named_actors(all_namespaces=True)
    return [actor for actor in listed if actor["name"].startswith(prefix)]


def quality_replicas() -> set[str]:
    """The actor names of the `quality` deployment's replicas."""
    return {actor["name"] for actor in quality_replica_actors()}


def test_redeploying_the_same_config_keeps_the_models_running_replicas(redeployed):
    deploy_quality(redeployed.config, 4)
    before = wait_until(
        quality_replicas,
        lambda names: len(names) == 4,
        timeout_s=60,
        interval_s=0.25,
        what="the quality deployment's replaced replicas to be gone",
    )
    deploy_quality(redeployed.config, 4)
    assert quality_replicas() == before


def test_wide_hires_render_runs_on_several_replicas_at_once(redeployed):
    deploy_quality(redeployed.config, 4)
    body = {**JOB, "width": 2048, "height": 1024, "steps": 3, "format": "tiff", "dpi": 150}
    with redeployed.client() as http:
        view, image = render_large(http, body)
    metrics = view["result"]["metrics"]
    assert image.shape == (1024, 2048, 3)
    assert metrics["max_concurrent_replicas"] >= 2
    assert metrics["tiles"] == 45
    assert 0.5 < view["result"]["seam_score"] < 1.5
    assert view["status"] == "done" and view["format"] == "tiff"


def test_killed_replica_mid_render_gives_the_same_image(redeployed):
    deploy_quality(redeployed.config, 4)
    with redeployed.client() as http:
        started = http.post("/v1/renders", json={**JOB, "wait": False})
        assert started.status_code == 202
        job_id = started.json()["id"]
        wait_until(
            lambda: http.get(f"/v1/renders/{job_id}").json(),
            lambda view: view["progress"]["done"] >= 1,
            timeout_s=300,
            interval_s=0.1,
            what=f"render {job_id} to finish a tile",
        )
        victim = wait_until(
            busy_quality_replica,
            lambda replica: replica is not None,
            timeout_s=60,
            interval_s=0.05,
            what="a quality replica computing one of the job's tiles",
        )
        ray.kill(victim, no_restart=True)
        view = wait_until(
            lambda: http.get(f"/v1/renders/{job_id}").json(),
            lambda view: view["status"] not in ("queued", "running"),
            timeout_s=300,
            interval_s=0.25,
            what=f"render {job_id} to stop running after a replica was killed",
        )
        assert view["status"] == "done", view
        assert view["result"]["metrics"]["retries"] >= 1
        image = np.asarray(
            Image.open(__import__("io").BytesIO(http.get(view["result"]["url"]).content))
        )
    assert np.array_equal(image, REFERENCE["image"])


def busy_quality_replica():
    """A running `quality` replica with a request in flight, or None."""
    for actor in quality_replica_actors():
        try:
            replica = ray.get_actor(actor["name"], namespace=actor["namespace"])
            if ray.get(replica.get_num_ongoing_requests.remote(), timeout=5) > 0:
                return replica
        except (ValueError, ray.exceptions.RayError, TimeoutError):
            continue  # stopped since listed
    return None


def test_progress_is_published_and_tiled_mode_works(redeployed):
    deploy_quality(redeployed.config, 4)
    with redeployed.client() as http:
        started = http.post(
            "/v1/renders",
            # 12 steps: long enough per tile for the 0.1 s poll to see progress move
            json={**JOB, "mode": "tiled", "wait": False, "width": 512, "height": 512, "steps": 12},
        )
        assert started.status_code == 202
        view = started.json()
        assert view["status"] == "queued" and view["progress"]["done"] == 0
        assert started.headers["Location"] == f"/v1/jobs/{view['id']}"
        assert started.headers["Retry-After"] == "1"
        seen = set()

        def watched_to_the_end(view: dict) -> bool:
            if view["status"] not in ("queued", "running"):
                return True
            seen.add(view["progress"]["done"])
            return False

        job_id = view["id"]
        view = wait_until(
            lambda: http.get(f"/v1/renders/{job_id}").json(),
            watched_to_the_end,
            timeout_s=300,
            interval_s=0.1,
            what=f"render {job_id} to stop running",
        )
        record = http.get(f"/v1/runs/{view['id']}").json()
    assert view["status"] == "done" and view["progress"] == {"done": 9, "total": 9}
    assert len(seen) > 1  # progress moved while we watched
    assert record["params"]["mode"] == "tiled" and record["metrics"]["seam_score"] > 0
    assert record["outputs"]["image"].endswith(".png")


def test_a_full_model_queue_makes_accepted_jobs_wait_never_fail(redeployed):
    # Four jobs at once keep twice what 2 replicas take (1 each) plus a queue of 1 in
    # flight: Serve refuses some calls (BackPressureError); the jobs wait for room. Each
    # job has about 20 tiles, so two running jobs contend for the replicas for seconds (at
    # 6 tiles each, one CI run saw no refusal at all).
    deploy_quality(redeployed.config, 2, max_ongoing_requests=1, max_queued_requests=1)
    body = {**JOB, "width": 1024, "height": 768, "steps": 3, "wait": False}
    with redeployed.client() as http:
        ids = []
        for seed in range(4):
            started = http.post("/v1/renders", json={**body, "seed": seed})
            assert started.status_code == 202, started.text
            ids.append(started.json()["id"])
        waits = 0
        for job_id in ids:
            view = wait_until(
                lambda job_id=job_id: http.get(f"/v1/renders/{job_id}").json(),
                lambda view: view["status"] not in ("queued", "running"),
                timeout_s=300,
                interval_s=0.25,
                what=f"render {job_id} to end",
            )
            assert view["status"] == "done", view
            waits += view["result"]["metrics"]["overload_waits"]
    assert waits > 0  # the queue was full at times: the path was taken


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"format": "webp"}, "format"),
        ({"format": "jpeg", "width": 65536 + 8, "height": 64}, "width"),
        ({"tile_size": 100}, "tile_size"),
        ({"overlap": 200}, "overlap"),
        ({"mode": "tiled", "base_image": "AAAA"}, "base_image"),
    ],
)
def test_large_render_errors_are_422(redeployed, patch, field):
    with redeployed.client() as http:
        response = http.post("/v1/renders", json={**JOB, **patch})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_unknown_render_id_is_404(redeployed):
    with redeployed.client() as http:
        response = http.get("/v1/renders/20260101-000000-000000-deadbeef")
    assert response.status_code == 404
    assert "no run" in response.json()["error"]["message"]


def test_out_of_memory_tile_is_split_and_the_job_completes(redeployed):
    deploy_quality(redeployed.config, 1, max_pixels_per_call=300 * 300)  # tiles of 384² OOM
    body = {**JOB, "width": 768, "height": 384, "seed": 5, "tile_size": 384}
    with redeployed.client() as http:
        view, image = render_large(http, body)
    assert image.shape == (384, 768, 3)
    metrics = view["result"]["metrics"]
    assert metrics["splits"] == metrics["tiles"] == 3
    assert 0.5 < view["result"]["seam_score"] < 1.5


def upscale(http: httpx.Client, image: np.ndarray, **fields) -> tuple[dict, np.ndarray]:
    response = http.post("/v1/upscale", json={"image": png_b64(image), **fields}, timeout=600)
    assert response.status_code == 200, response.text
    view = response.json()
    return view, np.asarray(Image.open(BytesIO(http.get(view["result"]["url"]).content)))


def test_tiled_upscale_matches_a_whole_image_pass_on_one_and_four_replicas(redeployed):
    from serve.upscaler import load_upscaler

    source = scene(300, 200)
    whole = load_upscaler("realesrgan:animevideov3-x4", 4).upscale(source)
    deploy_fixed(redeployed.config, "upscaler", 1)
    with redeployed.client() as http:
        one_view, one = upscale(http, source)
    deploy_fixed(redeployed.config, "upscaler", 4)
    with redeployed.client() as http:
        four_view, four = upscale(http, source)
        record = http.get(f"/v1/runs/{four_view['id']}").json()
    assert one.shape == four.shape == whole.shape == (800, 1200, 3)
    assert np.array_equal(one, four)
    assert psnr(four, whole) >= 50
    assert four_view["result"]["seam_score"] <= 1.05
    assert four_view["result"]["metrics"]["tiles"] == 6
    assert four_view["result"]["metrics"]["replicas_used"] > 1
    assert record["kind"] == "upscale" and record["params"]["passes"] == 1


def test_upscale_chains_passes_beyond_one(redeployed):
    deploy_fixed(redeployed.config, "upscaler", 4)
    with redeployed.client() as http:
        view, image = upscale(http, scene(40, 30), scale=16, format="tiff")
    assert image.shape == (480, 640, 3)
    assert view["result"]["metrics"]["tiles"] == 2  # pass 2: 160x120 in 128-px tiles


@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ({"image": "bm90IGFuIGltYWdl"}, "image", "not a decodable"),
        ({"scale": 3}, "scale", "upscales by 4, 16, 64"),
        ({"model": "quality"}, "model", "not an upscaler"),
        ({"model": "nope"}, "model", "not an upscaler"),
        ({"scale": 64}, "scale", "over the limit"),
    ],
)
def test_bad_upscale_requests_are_422(redeployed, patch, field, fragment):
    body = {"image": png_b64(scene(600, 400)), **patch}
    with redeployed.client() as http:
        response = http.post("/v1/upscale", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and fragment in error["message"]
