"""What crosses the wire to a provider and back, and what an adapter is.

An adapter (one module per provider in `core.remote.providers`) is pure: it turns
a `RemoteCall` into an `HttpCall` and an `HttpReply` into a `ProviderReply`; the
caller (`core.remote.caller`) does the sending, limiting and retrying. Headers and
file bodies are kept out of reprs, so a key never reaches a log line by accident.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

__all__ = [
    "Adapter",
    "HttpCall",
    "HttpReply",
    "Malformed",
    "Mode",
    "ProviderReply",
    "Refused",
    "RemoteCall",
    "SizeOption",
    "b64decode",
    "error_message",
    "json_body",
    "png_bytes",
    "reply_header",
]

Mode = Literal["txt2img", "img2img", "inpaint"]


class Refused(Exception):
    """The provider refused the content (its safety system); `reason` is its own words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Malformed(Exception):
    """The provider's answer does not have the documented shape."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SizeOption:
    """One output size a provider offers: what it is asked for, and what it returns.

    `label` is the provider's own spelling ('1792x1024', '16:9', 'ASPECT_16_9', '16x9');
    `params` are extra request fields that select it (a resolution tier such as 2K);
    `ratio` is the exact aspect when the nominal `width` x `height` only approximate it.
    """

    label: str
    width: int
    height: int
    params: tuple[tuple[str, str], ...] = ()
    ratio: float = 0.0  # the exact aspect ratio when width x height only approximates it

    @property
    def aspect(self) -> float:
        return self.ratio or self.width / self.height


@dataclass(frozen=True, eq=False)
class RemoteCall:
    """One image for an adapter to ask for; `image` and `mask` are already at `size`.

    `image` is uint8 (H, W, 3); `mask` uint8 (H, W) with 255 where the model repaints
    (this project's convention: an adapter converts it to its provider's).
    """

    model: str
    prompt: str
    size: SizeOption
    mode: Mode = "txt2img"
    negative_prompt: str = ""
    seed: int | None = None
    strength: float = 0.75
    image: np.ndarray | None = field(default=None, repr=False)
    mask: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request: a JSON body, or a multipart form of fields and files."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    json: Any = field(default=None, repr=False)
    data: dict[str, str] | None = field(default=None, repr=False)
    files: list[tuple[str, tuple[str, bytes, str]]] | None = field(default=None, repr=False)
    multipart: bool = False  # a multipart/form-data body (fields and files), else JSON


@dataclass(frozen=True)
class HttpReply:
    """One HTTP answer; header names are lower case."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class ProviderReply:
    """The image a provider returned (bytes, or a URL to download) and what it said of it."""

    image: bytes | None = field(default=None, repr=False)
    image_url: str | None = None
    request_id: str | None = None
    seed: int | None = None
    revised_prompt: str | None = None


class Adapter(Protocol):
    """One provider's HTTP API (each adapter module provides these names)."""

    NAME: str
    DEFAULT_BASE_URL: str

    def capabilities(self, model: str) -> frozenset[str]:
        """The modes (txt2img, img2img, inpaint) the model takes."""
        ...

    def size_options(self, model: str, mode: Mode) -> list[SizeOption]:
        """The sizes the model returns in `mode`."""
        ...

    def ignored(self, call: RemoteCall) -> list[str]:
        """Request parameters the provider does not receive."""
        ...

    def build(self, call: RemoteCall, base_url: str, key: str) -> HttpCall:
        """The HTTP request for `call`."""
        ...

    def parse(self, reply: HttpReply) -> ProviderReply:
        """A 2xx answer's image; `Refused` or `Malformed` otherwise."""
        ...

    def refusal(self, reply: HttpReply) -> str | None:
        """The provider's reason when an error answer is a content-policy refusal."""
        ...


def json_body(reply: HttpReply) -> Any:
    """The answer's JSON; `Malformed` if it is not JSON."""
    try:
        return json.loads(reply.body)
    except ValueError:
        snippet = reply.body[:80].decode("utf-8", "replace")
        raise Malformed(f"the answer is not JSON (starts {snippet!r})") from None


def error_message(reply: HttpReply) -> str:
    """The provider's own error message, as most APIs spell it; else the body's start."""
    try:
        data = json.loads(reply.body)
    except ValueError:
        return reply.body[:200].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message") or error.get("status") or error
        if error is not None:
            return str(error)[:500]
    return json.dumps(data)[:200]


def b64decode(value: Any, what: str) -> bytes:
    """Base64 image bytes; `Malformed` naming `what` if they are not."""
    if not isinstance(value, str) or not value:
        raise Malformed(f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise Malformed(f"{what} is not base64") from None


def png_bytes(array: np.ndarray) -> bytes:
    """A uint8 RGB (H, W, 3) or grey (H, W) array as PNG."""
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def reply_header(reply: HttpReply, *names: str) -> str | None:
    """The first of the headers `names` the answer carries (request ids and the like)."""
    for name in names:
        value = reply.headers.get(name.lower())
        if value:
            return value
    return None
