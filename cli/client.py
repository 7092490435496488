"""A small HTTP client for a running render-cluster (used by the CLI)."""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

from cli.exit_codes import ExitCode, for_http_status
from core.errors import RenderClusterError

API_KEY_ENV = "RENDERCLUSTER_API_KEY"
api_key_option: ContextVar[str | None] = ContextVar("api_key_option", default=None)
"""The key given with `rendercluster --api-key` (wins over RENDERCLUSTER_API_KEY)."""


class ClientError(RenderClusterError):
    """The cluster could not be reached or refused the request; `exit_code` says which."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.ERROR):
        super().__init__(message)
        self.exit_code = exit_code


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
        api_key = api_key or api_key_option.get() or os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ClientError(
                f"cannot reach render-cluster at {self.url} (connection refused)",
                ExitCode.UNREACHABLE,
            ) from None
        except httpx.TimeoutException:
            raise ClientError(
                f"render-cluster at {self.url} did not answer in time", ExitCode.UNREACHABLE
            ) from None
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot talk to render-cluster at {self.url} ({type(exc).__name__})",
                ExitCode.UNREACHABLE,
            ) from None
        if response.status_code >= 400:
            message = _message(response)
            code = for_http_status(response.status_code, message)
            raise ClientError(f"HTTP {response.status_code}: {message}", code)
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
            raise ClientError(f"cannot fetch {url}: {exc}", ExitCode.UNREACHABLE) from None
        if response.status_code >= 400:
            code = for_http_status(response.status_code)
            raise ClientError(f"HTTP {response.status_code} fetching {url}", code)
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
