"""The tile router's model handle: Ray actor calls, whatever Serve's default transport."""

from __future__ import annotations

from typing import Any

from actors import tile_router
from actors.tile_router import tile_handle


class Handle:
    def __init__(self, name: str, app: str, options: dict[str, Any] | None = None):
        self.name, self.app, self.opts = name, app, options or {}

    def options(self, **options: Any) -> Handle:
        return Handle(self.name, self.app, self.opts | options)


def test_tiles_come_back_through_the_object_store_not_over_grpc(monkeypatch):
    monkeypatch.setattr(tile_router.serve, "get_deployment_handle", Handle)
    handle = tile_handle("render-cluster", "quality")
    assert (handle.name, handle.app) == ("model-quality", "render-cluster")
    assert handle.opts == {"_by_reference": True}
