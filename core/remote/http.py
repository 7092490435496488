"""The HTTP transport of hosted models (httpx): the `Send` and `Fetch` of `RemoteCaller`.

One `httpx.AsyncClient` per replica (connections are reused across calls). A
connection that fails or drops before an answer is `NoAnswer` (retried by the
caller); the caller bounds every attempt with its own timeout too.
"""

from __future__ import annotations

from typing import Any

import httpx

from core.remote.caller import NoAnswer
from core.remote.wire import HttpCall, HttpReply

__all__ = ["HttpTransport"]


class HttpTransport:
    """Sends `HttpCall`s and fetches image URLs."""

    def __init__(self, max_connections: int = 100):
        limits = httpx.Limits(max_connections=max_connections)
        self._client = httpx.AsyncClient(limits=limits, follow_redirects=True)

    async def send(self, call: HttpCall, timeout_s: float) -> HttpReply:
        kwargs: dict[str, Any] = {"headers": call.headers, "timeout": timeout_s}
        if call.multipart:
            fields = [(name, (None, value)) for name, value in (call.data or {}).items()]
            kwargs["files"] = fields + list(call.files or [])
        elif call.json is not None:
            kwargs["json"] = call.json
        return await self._request(call.method, call.url, kwargs)

    async def fetch(self, url: str, timeout_s: float) -> HttpReply:
        return await self._request("GET", url, {"timeout": timeout_s})

    async def _request(self, method: str, url: str, kwargs: dict[str, Any]) -> HttpReply:
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise TimeoutError(f"{method} {url} timed out") from None
        except httpx.TransportError as exc:
            raise NoAnswer(f"{type(exc).__name__} from {httpx.URL(url).host}") from None
        headers = {name.lower(): value for name, value in response.headers.items()}
        return HttpReply(response.status_code, headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()
