"""Large JSON request bodies parsed without holding the event loop for long.

Python holds the GIL through any one C call, so a 50 MB body parsed in one call
(`json.loads`, pydantic-core's `from_json`) stalls the ingress's event loop for
the whole parse even from a worker thread. A large body's long strings (base64
images, manifests: they carry no escapes) are cut out first by `find` calls,
the small rest is parsed in one call, and each long string is put back with one
decode of its own: many short holds of the GIL instead of one long one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from pydantic_core import from_json

__all__ = ["LARGE_BODY", "gather_body", "parse_json_body"]

LARGE_BODY = 2**20  # bytes: smaller bodies (and strings) are parsed in one call
_QUOTE, _BACKSLASH = b'"', b"\\"


async def gather_body(chunks: AsyncIterator[bytes]) -> bytearray:
    """The body's chunks in one buffer grown in place (large buffers grow by remapping,
    not copying): no join of a 50 MB body, one long copy, on the event loop."""
    gathered = bytearray()
    async for chunk in chunks:
        gathered += chunk
    return gathered


def parse_json_body(body: bytes | bytearray) -> Any:
    """What `json.loads(body)` gives; `ValueError` for a body that is not JSON."""
    if len(body) <= LARGE_BODY:
        return json.loads(body)
    spans = _long_strings(body)
    if not spans:
        return from_json(body)
    nonce = secrets.token_hex(8)
    pieces, tokens, last = [], {}, 0
    for index, (start, end) in enumerate(spans):
        token = f"\x00{nonce}-{index}"
        tokens[token] = (start, end)
        pieces += [body[last:start], f"\\u0000{nonce}-{index}".encode()]
        last = end
    pieces.append(body[last:])
    data = from_json(b"".join(pieces))
    return _restore(data, tokens, body)


def _long_strings(body: bytes | bytearray) -> list[tuple[int, int]]:
    """(start, end) of the contents of every string longer than `LARGE_BODY` without escapes."""
    spans, position = [], 0
    while (start := body.find(_QUOTE, position)) >= 0:
        end = _string_end(body, start + 1)
        if end < 0:
            break  # unterminated: the parser reports it
        if end - start - 1 > LARGE_BODY and body.find(_BACKSLASH, start + 1, end) < 0:
            spans.append((start + 1, end))
        position = end + 1
    return spans


def _string_end(body: bytes | bytearray, position: int) -> int:
    """Index of the quote closing the string whose contents start at `position`, or -1."""
    while (end := body.find(_QUOTE, position)) >= 0:
        backslashes = 0
        while body[end - 1 - backslashes] == 0x5C:  # '\\'
            backslashes += 1
        if backslashes % 2 == 0:
            return end
        position = end + 1
    return -1


def _restore(data: Any, tokens: dict[str, tuple[int, int]], body: bytes | bytearray) -> Any:
    """`data` with every token string replaced by the long string it stands for."""
    if isinstance(data, str):
        span = tokens.get(data)
        return data if span is None else str(memoryview(body)[span[0] : span[1]], "utf-8")
    if isinstance(data, list):
        return [_restore(item, tokens, body) for item in data]
    if isinstance(data, dict):
        if any(key in tokens for key in data):
            raise ValueError("a key longer than a MiB")
        return {key: _restore(value, tokens, body) for key, value in data.items()}
    return data
