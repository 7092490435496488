"""A small HTTP client for a running render-cluster (used by the CLI)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from core.errors import RenderClusterError


class ClientError(RenderClusterError):
    """The cluster could not be reached or refused the request."""


@dataclass
class RenderedImage:
    """Raw image bytes and what the server said about them."""

    content: bytes
    render_id: str
    seed: int


class RenderClient:
    """Talks to the HTTP API of a cluster at `url`."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 600.0):
        self.url = url.rstrip("/")
        api_key = api_key or os.environ.get("RENDERCLUSTER_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ClientError(
                f"cannot reach render-cluster at {self.url} (connection refused)"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"render-cluster at {self.url} did not answer in time") from None
        if response.status_code >= 400:
            raise ClientError(f"HTTP {response.status_code}: {_message(response)}")
        return response

    def render(self, body: dict[str, Any], fmt: str = "png") -> RenderedImage:
        """POST /v1/renders asking for the raw image."""
        response = self._call("POST", "/v1/renders", json=body, headers={"Accept": f"image/{fmt}"})
        return RenderedImage(
            content=response.content,
            render_id=response.headers.get("x-render-id", ""),
            seed=int(response.headers.get("x-seed", "0")),
        )

    def fetch(self, url: str) -> bytes:
        """Bytes of an artifact URL (the API's own route, or a presigned S3 URL)."""
        if url.startswith(self.url):
            return self._call("GET", url[len(self.url) :]).content
        try:  # a presigned URL carries its own credentials: send no API key there
            response = httpx.get(url, timeout=self._http.timeout)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot fetch {url}: {exc}") from None
        if response.status_code >= 400:
            raise ClientError(f"HTTP {response.status_code} fetching {url}")
        return response.content

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON resource."""
        return self._call("GET", path, params=params).json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON, return the JSON answer."""
        return self._call("POST", path, json=body).json()


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return error.get("message") or response.text
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
