"""A one-call render writes its image and its record off the ingress's event loop, and the
record still carries the request's owner (no Ray: a fake dispatcher)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from core.config import ClusterConfig, StorageConfig
from core.schemas import GenerateRequest, GenerateResult, RenderRequestBody
from core.store import LocalStore
from core.tenants import current_request_id, current_tenant
from serve.render_service import RenderService


class WatchedStore(LocalStore):
    """A local store that notes, for every write, whether it ran on the event loop's thread."""

    def __init__(self, root, loop_thread: list[int]):
        super().__init__(root)
        self.loop_thread = loop_thread
        self.writes: list[tuple[str, bool]] = []

    def _put_bytes(self, key: str, data: bytes) -> None:
        self.writes.append((key, threading.get_ident() in self.loop_thread))
        super()._put_bytes(key, data)


async def flat(model_name: str, request: GenerateRequest) -> GenerateResult:
    image = np.full((request.height, request.width, 3), 70, np.uint8)
    return GenerateResult(image, request.seed, 0.01, 1, "replica-1", ["0"])


def test_the_image_and_the_record_are_written_off_the_loop(tmp_path):
    config = ClusterConfig.model_validate(
        {
            "models": {"quality": {"source": "tiny:0", "native_resolution": 64}},
            "storage": StorageConfig(kind="local", path=tmp_path).model_dump(),
        }
    )
    loop_thread: list[int] = []
    store = WatchedStore(tmp_path, loop_thread)
    service = RenderService(config, store, flat)

    async def render():
        loop_thread.append(threading.get_ident())
        current_tenant.set("acme")
        current_request_id.set("request-7")
        return await service.render_single(RenderRequestBody(prompt="a barn", seed=4))

    record, encoded, fmt = asyncio.run(render())
    written = dict(store.writes)
    assert written == {record.outputs["image"]: False, service.registry.key(record.id): False}
    assert store.get_bytes(record.outputs["image"]) == encoded and fmt == "png"
    saved = service.registry.get(record.id)
    assert (saved.owner, saved.request_id, saved.status) == ("acme", "request-7", "done")
