"""Counts every answered request by route template and status (`core.telemetry`).

The outermost middleware, so the gate's own answers (401, 413, 429) count too.
Routes are labelled by their template (``/v1/runs/{run_id}``), never the raw
path, so the number of series stays bounded; a request no route matched is
``unmatched``, one the gate answered before routing is ``gate``.
"""

from __future__ import annotations

from core import telemetry

__all__ = ["RequestMetrics"]

REJECTED = frozenset({429, 503})


class RequestMetrics:
    """Pure ASGI middleware recording `rendercluster_requests_total` and rejections."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        answered: list[int] = []

        async def send_counted(message):
            if message["type"] == "http.response.start":
                answered.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            status = answered[0] if answered else 500
            route = _route_of(scope, answered)
            telemetry.count("rendercluster_requests_total", route=route, status=str(status))
            if status in REJECTED:
                telemetry.count(
                    "rendercluster_rejected_requests_total", status=str(status), route=route
                )


def _route_of(scope, answered: list[int]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is not None:
        return path
    return "gate" if answered and answered[0] in (401, 413, 429) else "unmatched"
