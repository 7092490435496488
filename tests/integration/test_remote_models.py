"""Hosted models (family remote) on the shared cluster, against a local double of each provider.

The module adds five hosted models to the shared app (the local ones keep running),
each pointed at `tests.remote_double.ProviderDouble` on 127.0.0.1, and restores the
app at the end. Proves: a render through each provider via /v1/renders with its
record; exact sizes the provider does not offer; edits and a missing capability;
refusal, retries, timeout and malformed answers as HTTP errors; a pipeline whose
layout stage is hosted and whose final and hires stages are local; a 40-item
campaign on a model bounded to 2 calls in flight across its 2 replicas; the
typography gate on a hosted image; runs filtered by provider.

The API key reaches the replicas as an environment variable, like a Kubernetes
Secret: it is set here at import, before the shared cluster starts its raylet (test
modules are imported before any fixture runs), so every worker inherits it.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import ray
from PIL import Image
from ray import serve
from typer.testing import CliRunner

from actors.job_supervisor import ensure_supervisor, supervisor
from actors.remote_limiter import LIMITER_NAMESPACE, limiter_name
from cli.main import app as cli_app
from core.config import APP_NAME, ClusterConfig, deployment_name
from core.largeformat.hires import base_size
from core.typography import tesseract_available
from serve.app import application
from serve.local_cluster import wait_running
from tests.integration.test_campaigns import submit, wait_finished
from tests.remote_double import KEY, ProviderDouble
from tests.unit.test_image_metadata import read_metadata
from tests.waiting import wait_until

KEY_ENV = "RC_TEST_PROVIDER_KEY"
os.environ[KEY_ENV] = KEY  # before the shared cluster starts: see the module docstring

HOSTED = {  # model name -> (provider, provider model, replicas, remote overrides)
    "ideo": ("ideogram", "V_2", 2, {"max_concurrency": 2, "cost_per_image": 0.08}),
    "ideo3": ("ideogram", "V_3", 1, {"cost_per_image": 0.06}),
    "gpt": ("openai", "gpt-image-1", 1, {"cost_per_image": 0.04}),
    "imagen": ("imagen", "imagen-4.0-generate-001", 1, {"timeout_s": 2, "cost_per_image": 0.04}),
    "nano": ("gemini", "gemini-2.5-flash-image", 1,
             {"cost_per_image": 0.039, "refine_model": "quality"}),
}  # fmt: skip
PIPELINE = {
    "description": "hosted layout (Ideogram) -> local final (img2img) -> local hires",
    "stages": [
        {"name": "layout", "model": "ideo", "width": 256, "height": 128},
        {"name": "final", "model": "quality", "width": 256, "height": 128, "steps": 2,
         "strength": 0.5, "consumes": ["previous"]},
        {"name": "hires", "kind": "hires", "model": "quality", "width": 512, "height": 256,
         "steps": 4, "strength": 0.3, "consumes": ["previous"]},
    ],
}  # fmt: skip


def hosted_config(base: ClusterConfig, double: ProviderDouble) -> ClusterConfig:
    """The shared config plus the hosted models, a style and a pipeline using them."""
    data = base.model_dump(mode="json")
    for name, (provider, model, replicas, overrides) in HOSTED.items():
        remote = {
            "provider": provider,
            "model": model,
            "base_url": double.base_url(provider),
            "api_key_env": KEY_ENV,
            "requests_per_minute": 6000,
            "timeout_s": 20,
            "max_retries": 3,
            "max_retry_wait_s": 5,
            **overrides,
        }
        data["models"][name] = {
            "family": "remote",
            "remote": remote,
            "cpus_per_replica": 0.05,
            "max_ongoing_requests": 16,
            "autoscaling": {"min_replicas": replicas, "max_replicas": replicas},
        }
    data["styles"]["hosted-layout"] = "ideo"
    data["pipelines"]["hosted"] = PIPELINE
    return ClusterConfig.model_validate(data)


def _supervisor_named() -> bool:
    try:
        supervisor()
    except ValueError:
        return False
    return True


def restart_supervisor(config: ClusterConfig) -> None:
    """A job supervisor running `config`: it keeps the config it started with, so after a
    redeploy with new models and pipelines the old one is replaced (its jobs are adopted)."""
    if _supervisor_named():
        ray.kill(supervisor(), no_restart=True)
        wait_until(lambda: not _supervisor_named(), timeout_s=60, what="the old supervisor to go")
    handle = ensure_supervisor(config, APP_NAME)
    ray.get(handle.holder.remote(), timeout=120)


@pytest.fixture(scope="module")
def double() -> Iterator[ProviderDouble]:
    server = ProviderDouble(latency_s=0.05, slow_s=4.0).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hosted(cluster, double) -> Iterator[Any]:
    started = time.perf_counter()
    config = hosted_config(cluster.config, double)
    serve.run(application(config), name=APP_NAME, route_prefix="/", blocking=False)
    wait_running()
    for name, (_, _, replicas, _) in HOSTED.items():
        wait_until(
            lambda name=name: (
                serve.status()
                .applications[APP_NAME]
                .deployments[deployment_name(name)]
                .replica_states
            ),
            lambda states, replicas=replicas: states == {"RUNNING": replicas},
            timeout_s=120,
            interval_s=0.5,
            what=f"{deployment_name(name)} to run {replicas} replica(s)",
        )
    restart_supervisor(config)  # pipeline runs are its jobs
    print(f"\nhosted models deployed in {time.perf_counter() - started:.1f}s")
    yield cluster
    serve.run(application(cluster.config), name=APP_NAME, route_prefix="/", blocking=False)
    wait_running()
    restart_supervisor(cluster.config)
    for name in HOSTED:
        try:
            actor = ray.get_actor(limiter_name(APP_NAME, name), namespace=LIMITER_NAMESPACE)
        except ValueError:
            continue
        ray.kill(actor, no_restart=True)


@pytest.fixture(autouse=True)
def fresh_double(double: ProviderDouble) -> None:
    double.reset()


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def png_b64(width: int, height: int, value: int = 120) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (value, 90, 200)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def render(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/renders", json={"prompt": "a red kite over a harbour", **body})


@pytest.mark.parametrize("model", sorted(HOSTED))
def test_a_render_through_each_provider_is_exact_and_recorded(hosted, double, model):
    provider, provider_model, _, overrides = HOSTED[model]
    with hosted.client() as http:
        response = render(http, model=model, width=1000, height=600, seed=11)
        assert response.status_code == 200, response.text
        answer = response.json()
        record = http.get(f"/v1/runs/{answer['id']}").json()
    assert decode(answer["image_base64"]).shape == (600, 1000, 3)
    assert (answer["width"], answer["height"], answer["model"]) == (1000, 600, model)
    call = record["provider"]
    assert (call["provider"], call["provider_model"]) == (provider, provider_model)
    assert call["cost_usd"] == record["cost_usd"] == overrides["cost_per_image"]
    assert call["size"]["asked"] == [1000, 600] and call["size"]["action"] == "resize+crop"
    assert record["model_source"] == f"remote:{provider}/{provider_model}"
    assert record["family"] == "remote" and record["seed"] == 11
    assert double.violations == []
    (seen,) = double.requests_to(provider)
    assert KEY not in str(record)


def test_exact_sizes_the_providers_do_not_offer(hosted):
    with hosted.client() as http:
        for model, (width, height) in [("imagen", (333, 777)), ("nano", (1000, 300)),
                                       ("gpt", (640, 480)), ("ideo3", (1200, 500))]:  # fmt: skip
            response = render(http, model=model, width=width, height=height)
            assert response.status_code == 200, response.text
            assert decode(response.json()["image_base64"]).shape == (height, width, 3)
            size = http.get(f"/v1/runs/{response.json()['id']}").json()["provider"]["size"]
            assert size["asked"] == [width, height] and size["returned"] != [width, height]
            print(f"{model} {width}x{height}: asked {size['requested']}, got {size['returned']}")


def test_edits_go_to_the_providers_edit_apis_and_a_missing_one_is_a_422(hosted, double):
    mask = np.zeros((256, 384), np.uint8)
    mask[64:192, 96:288] = 255
    out = io.BytesIO()
    Image.fromarray(mask).save(out, "PNG")
    mask_b64 = base64.b64encode(out.getvalue()).decode()
    with hosted.client() as http:
        remix = render(http, model="gpt", init_image=png_b64(384, 256), strength=0.6)
        inpaint = render(http, model="ideo", init_image=png_b64(384, 256), mask=mask_b64)
        refused = render(http, model="imagen", init_image=png_b64(384, 256))
    assert remix.status_code == 200 and inpaint.status_code == 200, (remix.text, inpaint.text)
    assert decode(inpaint.json()["image_base64"]).shape == (256, 384, 3)
    assert [s.endpoint for s in double.requests_to("openai")] == ["/openai/v1/images/edits"]
    assert [s.endpoint for s in double.requests_to("ideogram")] == ["/ideogram/edit"]
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["field"] == "init_image"
    assert "model 'imagen' cannot do img2img" in error["message"]
    assert double.requests_to("imagen") == [] and double.violations == []


def test_provider_failures_become_clear_http_errors(hosted, double):
    with hosted.client() as http:
        refused = render(http, model="ideo", prompt="a FORBIDDEN poster")
        double.fail_next("openai", "429:1", "500")
        retried = render(http, model="gpt")
        double.fail_next("gemini", "malformed")
        malformed = render(http, model="nano")
        started = time.perf_counter()
        slow = render(http, model="imagen", prompt="a SLOW sunrise")
        slow_s = time.perf_counter() - started
        large = render(http, model="ideo", width=2048, height=1024, mode="hires")
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "prompt"
    assert "failed the safety checks" in refused.json()["error"]["message"]
    assert retried.status_code == 200, retried.text
    call = hosted.client().get(f"/v1/runs/{retried.json()['id']}").json()["provider"]
    assert call["retries"] == 2 and call["waited_s"] >= 1.0
    assert malformed.status_code == 502 and "malformed answer" in malformed.text
    assert slow.status_code == 504 and "timeout_s=2s" in slow.text and slow_s < 4.0
    assert large.status_code == 422 and "is hosted: large renders" in large.text
    assert "Traceback" not in refused.text + malformed.text + slow.text


def test_a_large_render_draws_its_base_on_the_hosted_model_and_its_tiles_locally(hosted, double):
    body = {"model": "nano", "mode": "hires", "width": 900, "height": 381, "steps": 4, "seed": 3}
    with hosted.client() as http:
        response = render(http, **body)
        assert response.status_code == 200, response.text
        view = response.json()
        image = http.get(view["result"]["url"])
        record = http.get(f"/v1/runs/{view['id']}").json()
    assert image.status_code == 200
    assert np.asarray(Image.open(io.BytesIO(image.content))).shape == (381, 900, 3)
    assert read_metadata(image.content)["run_id"] == view["id"]  # the file leads to its record
    (seen,) = double.requests_to("gemini")  # one hosted call: the base
    assert record["model"] == "nano" and record["params"]["refine_model"] == "quality"
    # the base at the hosted model's native area (1024²), capped at the target, any size
    assert record["provider"]["size"]["asked"] == list(base_size(900, 381, 1024, 8))
    assert record["cost_usd"] == 0.039 and record["status"] == "done"
    assert record["metrics"]["tiles"] > 1 and record["metrics"]["replicas_used"] >= 1
    assert double.violations == []


def test_a_pipeline_with_a_hosted_layout_and_local_final_and_hires_stages(hosted, double):
    with hosted.client() as http:
        response = http.post(
            "/v1/pipelines/hosted/runs",
            json={"prompt": "a harbour poster", "seed": 3, "wait": True},
        )
        assert response.status_code in (200, 202), response.text
        run = wait_until(
            lambda: http.get(f"/v1/pipelines/runs/{response.json()['id']}").json(),
            lambda view: view["status"] in ("done", "failed"),
            timeout_s=240,
            what="the hosted pipeline run to end",
        )
        assert run["status"] == "done", run.get("error")
        stages = {s["name"]: http.get(f"/v1/runs/{s['run_id']}").json() for s in run["stages"]}
        image = http.get(run["result"]["url"])
        paid = http.get(f"/v1/runs/{run['id']}").json()["cost_usd"]
    assert paid == 0.08  # the run's record sums its stages' hosted calls
    layout, final, hires = stages["layout"], stages["final"], stages["hires"]
    assert layout["provider"]["provider"] == "ideogram" and layout["cost_usd"] == 0.08
    assert final["model"] == "quality" and final["provider"] is None
    assert hires["model"] == "quality" and hires["provider"] is None
    assert len(double.requests_to("ideogram")) == 1
    assert image.status_code == 200, (run["result"], image.status_code, image.text[:300])
    assert Image.open(io.BytesIO(image.content)).size == (512, 256)


def test_a_campaign_of_40_on_a_model_bounded_to_2_in_flight(hosted, double):
    """40 items through 2 replicas, 8 in flight to Serve: at most 2 ever reach the provider."""
    double.latency_s = 0.2
    double.fail_next("ideogram", "429:1")  # one 429 pauses every replica's starts
    name = f"hosted-{uuid.uuid4().hex[:8]}"
    items = "\n".join(f"  - {{id: i{n:02d}, prompt: poster number {n}}}" for n in range(40))
    manifest = f"campaign: {name}\ndefaults: {{model: ideo, sizes: [320x240]}}\nitems:\n{items}\n"
    try:
        with hosted.client() as http:
            started = time.perf_counter()
            submitted = submit(http, {"manifest": manifest, "format": "yaml", "max_in_flight": 8})
            assert submitted.status_code == 202, submitted.text
            view = wait_finished(http, name, timeout_s=240)
            elapsed = time.perf_counter() - started
            handle = serve.get_deployment_handle(deployment_name("ideo"), app_name=APP_NAME)
            limits = handle.limits.remote().result(timeout_s=30)
            summary = http.get(view["csv_url"])  # links are signed: each its own
            page = http.get(view["report_url"]).text
    finally:
        double.latency_s = 0.05
    calls = double.requests_to("ideogram")
    print(
        f"\n40 hosted renders in {elapsed:.1f}s; provider saw {len(calls)} calls, "
        f"at most {double.max_in_flight['ideogram']} in flight; limiter {limits}"
    )
    assert (view["state"], view["done"], view["failed"]) == ("finished", 40, 0), view
    assert double.max_in_flight["ideogram"] == 2  # never exceeded, and used
    assert limits["max_in_flight"] <= 2 and limits["cool_downs"] >= 1
    assert len(calls) == 41  # 40 images and the one 429, no storm of them
    assert summary.status_code == 200, summary.text
    rows = list(csv.DictReader(io.StringIO(summary.text)))
    assert len(rows) == 40 and {row["cost_usd"] for row in rows} == {"0.08"}
    assert 'hosted calls <b class="cost">$3.2000</b>' in page


@pytest.mark.skipif(not tesseract_available(), reason="tesseract missing (tesseract-ocr)")
def test_the_typography_gate_on_a_hosted_image(hosted):
    box = {"copy": "Spring SALE $19.99", "anchor": {"x": 0.08, "y": 0.55, "w": 0.84, "h": 0.3},
           "font_hint": "sans-bold"}  # fmt: skip
    integrated = {**box, "copy": "NEW", "anchor": {"x": 0.1, "y": 0.1, "w": 0.3, "h": 0.25},
                  "mode": "integrated"}  # fmt: skip
    with hosted.client() as http:
        response = render(http, style="hosted-layout", width=512, height=256, text_boxes=[box])
        assert response.status_code == 200, response.text
        record = http.get(f"/v1/runs/{response.json()['id']}").json()
        fallback = render(http, model="imagen", width=512, height=256, text_boxes=[integrated])
    typography = record["typography"]
    assert typography["passed"] and typography["boxes"][0]["delivered"] == "overlay"
    assert typography["boxes"][0]["gate"]["ocr_text"] == box["copy"]
    assert record["provider"]["provider"] == "ideogram" and record["model"] == "ideo"  # by style
    # a hosted model without an edit API cannot integrate a box: it is delivered as overlay
    assert fallback.status_code == 200, fallback.text
    runs = hosted.client().get(f"/v1/runs/{fallback.json()['id']}").json()["typography"]
    assert runs["boxes"][0]["delivered"] == "overlay"


def test_runs_list_filters_by_provider_over_http_and_the_cli(hosted):
    with hosted.client() as http:
        mine = render(http, model="nano", width=256, height=256).json()["id"]
        render(http, model="gpt", width=256, height=256)
        runs = http.get("/v1/runs", params={"provider": "gemini", "limit": 1000}).json()["runs"]
    assert mine in {run["id"] for run in runs}
    assert {run["provider"]["provider"] for run in runs} == {"gemini"}
    result = CliRunner().invoke(
        cli_app, ["runs", "list", "--provider", "gemini", "--limit", "1000", "--url", hosted.url]
    )
    assert result.exit_code == 0, result.output
    assert f"{len(runs)} runs" in result.output
    assert f"hosted calls cost ${0.039 * len(runs):.4f} in all" in result.output
