"""Large renders are durable jobs: they outlive the ingress, their router and their client.

Each test submits a hires job to the shared cluster and disturbs it (kills the
ingress replica, kills the job's router, drops the waiting client, cancels it),
then checks the outcome against an undisturbed render of the same request.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import numpy as np
import pytest
import ray
from PIL import Image

from actors.job_work import JOBS_NAMESPACE
from actors.router_pool import job_router
from core.config import APP_NAME
from core.jobs.webhooks import SIGNATURE_HEADER, verify
from tests.integration.conftest import WEBHOOK_SECRET
from tests.waiting import wait_until

JOB = {
    "prompt": "a harbour at dawn, wide",
    "model": "quality",
    "width": 768,
    "height": 384,
    "steps": 3,
    "seed": 2024,
    "tile_size": 128,
    "mode": "hires",
}
REFERENCE: dict[str, np.ndarray] = {}


def _image(http: httpx.Client, view: dict) -> np.ndarray:
    with Image.open(io.BytesIO(http.get(view["result"]["url"]).content)) as image:
        return np.asarray(image.convert("RGB"))


def _reference(http: httpx.Client) -> np.ndarray:
    if "image" not in REFERENCE:
        answer = http.post("/v1/renders", json=JOB, timeout=600)
        assert answer.status_code == 200, answer.text
        REFERENCE["image"] = _image(http, answer.json())
    return REFERENCE["image"]


def _job(http: httpx.Client, job_id: str) -> dict:
    """The job, tolerating the moments when no ingress replica answers."""
    try:
        answer = http.get(f"/v1/jobs/{job_id}", timeout=10)
    except httpx.HTTPError as exc:
        return {"status": f"unreachable ({type(exc).__name__})", "progress": {"done": 0}}
    if answer.status_code != 200:
        return {"status": f"http {answer.status_code}", "progress": {"done": 0}}
    return answer.json()


def _submit(http: httpx.Client, **extra) -> str:
    answer = http.post("/v1/renders", json={**JOB, "wait": False, **extra})
    assert answer.status_code == 202, answer.text
    assert answer.headers["Location"] == f"/v1/jobs/{answer.json()['id']}"
    return answer.json()["id"]


def _until_tiles(http: httpx.Client, job_id: str, tiles: int) -> dict:
    return wait_until(
        lambda: _job(http, job_id),
        lambda job: job["progress"]["done"] >= tiles or job["status"] in ("done", "failed"),
        timeout_s=300,
        interval_s=0.1,
        what=f"job {job_id} to finish {tiles} tiles",
    )


def _until_ended(http: httpx.Client, job_id: str) -> dict:
    return wait_until(
        lambda: _job(http, job_id),
        lambda job: job["status"] in ("done", "failed", "cancelled"),
        timeout_s=300,
        interval_s=0.25,
        what=f"job {job_id} to end",
    )


def _router_after_tiles(job_id: str, tiles: int):
    """The job's router once it has finished `tiles` tiles, read from the router itself:
    the job's own progress reaches the store only every `PROGRESS_POLL_S`, by when a
    small job may be done."""
    router = wait_until(
        lambda: job_router(job_id, JOBS_NAMESPACE, timeout_s=5),
        lambda router: router is not None,
        timeout_s=120,
        interval_s=0.05,
        what=f"job {job_id} to get its router",
    )
    wait_until(
        lambda: ray.get(router.progress.remote(), timeout=10),
        lambda progress: progress["done"] >= tiles,
        timeout_s=300,
        interval_s=0.02,
        what=f"job {job_id}'s router to finish {tiles} tiles",
    )
    return router


def _view(http: httpx.Client, job_id: str) -> dict:
    return http.get(f"/v1/renders/{job_id}").json()


def test_killing_the_ingress_mid_job_does_not_stop_it(cluster):
    with cluster.client() as http:
        reference = _reference(http)
        job_id = _submit(http)
        _until_tiles(http, job_id, 1)
        ingress = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#ingress#")
        ]
        ray.kill(ray.get_actor(ingress[0], namespace="serve"), no_restart=True)
        job = _until_ended(http, job_id)
        assert job["status"] == "done", job
        assert np.array_equal(_image(http, _view(http, job_id)), reference)


def test_killing_the_router_resumes_from_checkpoints_with_the_same_bytes(cluster):
    with cluster.client() as http:
        reference = _reference(http)
        job_id = _submit(http)
        router = _router_after_tiles(job_id, 3)
        pid = ray.get(router.where.remote())["pid"]
        os.kill(pid, signal.SIGKILL)  # the router's process dies, as on a lost node
        job = _until_ended(http, job_id)
        assert job["status"] == "done", job
        assert job["attempts"] == 2
        metrics = _view(http, job_id)["result"]["metrics"]
        assert 3 <= metrics["tiles_reused"] < metrics["tiles"]
        assert np.array_equal(_image(http, _view(http, job_id)), reference)


def test_a_disconnected_waiting_client_leaves_the_job_to_finish(cluster):
    key = "disconnect-test-1"
    body = {**JOB, "seed": 77, "wait": True}
    with cluster.client() as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/renders", json=body, headers={"Idempotency-Key": key}, timeout=1.0)
        again = http.post("/v1/renders", json=body, headers={"Idempotency-Key": key}, timeout=600)
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "done"
        jobs = http.get("/v1/jobs", params={"kind": "hires", "limit": 200}).json()["jobs"]
        mine = [job for job in jobs if job["idempotency_key"] == key]
        assert [job["id"] for job in mine] == [again.json()["id"]] and mine[0]["attempts"] == 1
        other = http.post(
            "/v1/renders", json={**body, "seed": 78}, headers={"Idempotency-Key": key}
        )
        assert other.status_code == 409 and key in other.json()["error"]["message"]


def test_cancel_during_tiles_stops_the_job_and_delivers_nothing(cluster):
    with cluster.client() as http:
        job_id = _submit(http, seed=91, width=1024, height=512)
        _until_tiles(http, job_id, 1)
        answer = http.post(f"/v1/jobs/{job_id}/cancel")
        assert answer.status_code == 200, answer.text
        job = wait_until(
            lambda: _job(http, job_id),
            lambda job: job["status"] == "cancelled",
            timeout_s=10,
            what=f"job {job_id} to be cancelled",
        )
        assert job["error"]["code"] == "cancelled" and job["result"] is None
        view = _view(http, job_id)
        assert view["status"] == "cancelled" and "result" not in view
        image = http.get(f"/v1/artifacts/renders/{job_id}/image.png")
        assert image.status_code == 404
        again = http.post(f"/v1/jobs/{job_id}/cancel")
        assert again.status_code == 422 and "already cancelled" in again.json()["error"]["message"]


class Receiver(BaseHTTPRequestHandler):
    answers: list[int] = []
    received: list[tuple[bytes, str]] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((body, self.headers[SIGNATURE_HEADER]))
        self.send_response(Receiver.answers.pop(0) if Receiver.answers else 200)
        self.end_headers()

    def log_message(self, *args):
        return None


def test_a_webhook_gets_one_valid_signed_delivery_after_one_failure(cluster):
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.answers, Receiver.received = [503], []
    hook = f"http://127.0.0.1:{server.server_address[1]}/done"
    try:
        with cluster.client() as http:
            job_id = _submit(http, seed=5, width=512, height=256, callback_url=hook)
            job = wait_until(
                lambda: _job(http, job_id),
                lambda job: len(job.get("deliveries", [])) >= 2,
                timeout_s=300,
                what=f"two webhook deliveries of job {job_id}",
            )
    finally:
        server.shutdown()
    assert [d["status_code"] for d in job["deliveries"]] == [503, 200]
    assert len(Receiver.received) == 2
    body, signature = Receiver.received[-1]
    assert verify(body, WEBHOOK_SECRET, signature)
    sent = json.loads(body)
    assert sent["id"] == job_id and sent["status"] == "done" and sent["result"]["image"]


def test_the_jobs_commands_list_show_wait_and_cancel(cluster):
    from typer.testing import CliRunner

    from cli.main import app

    with cluster.client() as http:
        job_id = _submit(http, seed=12, width=512, height=256)
    runner = CliRunner()
    waited = runner.invoke(app, ["jobs", "wait", job_id, "--url", cluster.url])
    assert waited.exit_code == 0, waited.output
    assert f"job {job_id} done" in waited.output
    listed = runner.invoke(app, ["jobs", "list", "--url", cluster.url, "--json", "--kind", "hires"])
    assert listed.exit_code == 0, listed.output
    assert job_id in [job["id"] for job in json.loads(listed.output)["jobs"]]
    shown = runner.invoke(app, ["jobs", "show", job_id, "--url", cluster.url])
    assert json.loads(shown.output)["status"] == "done"
    late = runner.invoke(app, ["jobs", "cancel", job_id, "--url", cluster.url])
    assert late.exit_code == 4 and "already done" in late.output  # rejected input
    assert "Traceback" not in late.output
