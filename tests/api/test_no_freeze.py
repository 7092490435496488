"""The ingress's event loop never waits on heavy work: `/healthz` answers within 100 ms
while a 50 MB upload, a large manifest and a runs query over thousands of records are
processed (in-process, one event loop, as in an ingress replica)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from core.records import RunRecord, new_run_id
from serve import offload
from serve.api_app import api
from tests.api.inprocess import config_for, install

BUDGET_S = 0.100
JSON = {"content-type": "application/json"}


def _upload_50mb() -> str:
    noise = np.random.default_rng(0).integers(0, 256, (4096, 4096, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=0)
    assert buffer.tell() > 48 * 2**20
    return base64.b64encode(buffer.getvalue()).decode()


def _manifest(items: int) -> str:
    lines = ["campaign: big-one", "items:"]
    lines += [
        f"  - {{prompt: 'a product shot number {i}', sizes: ['64x64']}}" for i in range(items)
    ]
    return "\n".join(lines) + "\n"


async def _poll(client: httpx.AsyncClient, stop: asyncio.Event, seen: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        response = await client.get("/healthz")
        seen.append(time.perf_counter() - start)
        assert response.status_code == 200
        await asyncio.sleep(0.01)


@pytest.mark.timeout(300)
def test_healthz_stays_fast_under_heavy_requests(tmp_path, monkeypatch):
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):  # a latency bound means nothing on a starved machine
        pytest.skip(f"machine too busy to measure: load average {load:.1f}")
    limits = {"max_upload_bytes": 60 * 2**20, "max_body_bytes": 80 * 2**20}
    renders = install(config_for(tmp_path, limits=limits), monkeypatch)
    record = RunRecord(kind="render", status="done", model="tiny", model_source="tiny:0")
    for _ in range(3000):
        renders.registry.save(record.model_copy(update={"id": new_run_id()}))
    # encoded here: the client shares the event loop, its own JSON encoding must not count
    body = {"prompt": "a", "init_image": _upload_50mb(), "strength": 0.5}
    upload = json.dumps(body).encode()
    offload.warm("core.campaign.submit")  # as the ingress does when it starts
    manifest = json.dumps({"manifest": _manifest(9000)}).encode()

    async def scenario() -> tuple[list[float], list[int]]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            stop, idle = asyncio.Event(), []
            poller = asyncio.create_task(_poll(client, stop, idle))
            await asyncio.sleep(1.0)  # the baseline: polls with nothing else running
            stop.set()
            await poller
            if max(idle) > BUDGET_S / 2:
                pytest.skip(f"machine too busy to measure: idle /healthz took {max(idle):.3f}s")
            stop, seen = asyncio.Event(), []
            poller = asyncio.create_task(_poll(client, stop, seen))
            await asyncio.sleep(0.1)
            heavy = await asyncio.gather(
                client.post("/v1/renders", content=upload, headers=JSON, timeout=120),
                client.post("/v1/campaigns", content=manifest, headers=JSON, timeout=120),
                client.get("/v1/runs", params={"limit": 1000, "model": "none"}, timeout=120),
            )
            stop.set()
            await poller
            return seen, [response.status_code for response in heavy]

    seen, statuses = asyncio.run(scenario())
    assert all(status < 500 for status in statuses), statuses
    print(f"healthz polls: {len(seen)}, max {max(seen) * 1000:.1f} ms, statuses {statuses}")
    assert len(seen) > 10
    assert max(seen) < BUDGET_S, f"slowest /healthz took {max(seen) * 1000:.0f} ms"
