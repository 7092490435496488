"""The ingress's event loop never waits on heavy work: `/healthz` answers within 100 ms
while a 50 MB upload, a large manifest and a runs query over thousands of records are
processed. The API runs as an ingress replica does: uvicorn in a process of its own
(tests.api.ingress_process), so the client's own work never counts against it.

Heavy work on the loop holds every poll it overlaps, each time it runs; on 2 shared
cores the scheduler alone can hold one poll past the budget now and then (in one full
suite run, three rounds in a row: 265, 186 and 162 ms, against 40 ms alone). So the heavy
requests go up to `ATTEMPTS` times, a second apart, and one round with every poll in
budget passes: a loop that waits on the heavy work fails every round."""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from core.config import StorageConfig
from core.records import RunRecord, RunRegistry, new_run_id
from core.store import open_store
from tests.waiting import wait_until

BUDGET_S = 0.100
ATTEMPTS = 5
JSON = {"content-type": "application/json"}
ROOT = Path(__file__).resolve().parents[2]


def _upload_50mb() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (4096, 4096, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=0)
    assert buffer.tell() > 48 * 2**20
    image = base64.b64encode(buffer.getvalue()).decode()
    return json.dumps({"prompt": "a", "init_image": image, "strength": 0.5}).encode()


def _manifest(items: int) -> bytes:
    lines = ["campaign: big-one", "items:"]
    lines += [
        f"  - {{prompt: 'a product shot number {i}', sizes: ['64x64']}}" for i in range(items)
    ]
    return json.dumps({"manifest": "\n".join(lines) + "\n"}).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _poll(url: str, stop: Event, seen: Queue) -> None:
    """GET /healthz every 10 ms until `stop`; put each round trip's seconds in `seen`."""
    with httpx.Client(base_url=url, timeout=5) as client:
        while not stop.is_set():
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            seen.put(time.perf_counter() - started)
            time.sleep(0.01)


class Poller:
    """Polls /healthz from a process of its own, so the test's own work (sending 67 MB,
    reading answers) never delays a poll: what it measures is the ingress alone."""

    def __init__(self, url: str):
        context = multiprocessing.get_context("spawn")
        self.stop, self.seen = context.Event(), context.Queue()
        self.process = context.Process(target=_poll, args=(url, self.stop, self.seen))
        self.found: list[float] = []

    def start(self) -> None:
        """Start polling; return once the first poll has answered (a spawned process takes
        most of a second to start: heavy work sent before then would go unwatched)."""
        self.process.start()
        self.found.append(self.seen.get(timeout=60))

    def poll_for(self, seconds: float) -> list[float]:
        self.start()
        time.sleep(seconds)
        return self.finish()

    def finish(self) -> list[float]:
        self.stop.set()
        while self.process.is_alive() or not self.seen.empty():
            try:
                self.found.append(self.seen.get(timeout=1))
            except queue.Empty:
                continue
        self.process.join(timeout=10)
        assert self.process.exitcode == 0, "the poller failed"
        return self.found


@pytest.fixture
def ingress(tmp_path):
    registry = RunRegistry(open_store(StorageConfig(kind="local", path=tmp_path)))
    record = RunRecord(kind="render", status="done", model="tiny", model_source="tiny:0")
    for _ in range(3000):
        registry.save(record.model_copy(update={"id": new_run_id()}))
    port = _free_port()
    server = subprocess.Popen(  # a session of its own: its offload worker goes with it
        [sys.executable, "-m", "tests.api.ingress_process", str(tmp_path), str(port)],
        cwd=ROOT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout_s=60, interval_s=0.2, what="the ingress process")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.timeout(300)
def test_healthz_stays_fast_under_heavy_requests(ingress):
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):  # a latency bound means nothing on a starved machine
        pytest.skip(f"machine too busy to measure: load average {load:.1f}")
    upload, manifest = _upload_50mb(), _manifest(9000)  # encoded before anything is timed
    idle = Poller(ingress).poll_for(1.0)  # the baseline: polls with nothing else running
    if max(idle) > BUDGET_S / 2:  # a latency bound means nothing on a starved machine
        load = os.getloadavg()[0]
        pytest.skip(f"machine too busy to measure: idle /healthz {max(idle):.3f}s, load {load}")
    slowest = []
    for _ in range(ATTEMPTS):
        statuses, seen = _heavy_round(ingress, upload, manifest)
        print(f"healthz polls: {len(seen)}, max {max(seen) * 1000:.1f} ms, statuses {statuses}")
        assert statuses == [422, 202, 200]  # the upload is read and refused: 4096 > 2048 a side
        assert len(seen) > 10
        slowest.append(max(seen))
        if max(seen) < BUDGET_S:
            break
        time.sleep(1.0)  # let the last round's work (and the machine) settle
    ms = ", ".join(f"{s * 1000:.0f}" for s in slowest)
    assert min(slowest) < BUDGET_S, f"slowest /healthz of each round took {ms} ms"


def _heavy_round(ingress: str, upload: bytes, manifest: bytes) -> tuple[list[int], list[float]]:
    """Send the three heavy requests at once while polling; their statuses, the polls' times."""
    poller = Poller(ingress)
    poller.start()
    with httpx.Client(base_url=ingress, timeout=120) as http, ThreadPoolExecutor(3) as pool:
        heavy = [
            pool.submit(http.post, "/v1/renders", content=upload, headers=JSON),
            pool.submit(http.post, "/v1/campaigns", content=manifest, headers=JSON),
            pool.submit(http.get, "/v1/runs", params={"limit": 1000, "model": "none"}),
        ]
        statuses = [future.result().status_code for future in heavy]
    return statuses, poller.finish()
