"""Signed, expiring artifact links: ``/v1/artifacts/{key}?expires=<unix s>&sig=<hmac>``.

The signature is an HMAC-SHA256 over the key and the expiry, so a link cannot be
moved to another key nor kept alive longer; it works without an API key until it
expires.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

ARTIFACTS_PATH = "/v1/artifacts/"
MAX_EXPIRES = 2**40  # far beyond any real expiry; bounds the number a client may send


def signature(secret: bytes, key: str, expires: int) -> str:
    message = f"{key}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signed_query(secret: bytes, key: str, expires: int) -> str:
    """The query string (``expires=…&sig=…``) of a link to `key` valid until `expires`."""
    return urlencode({"expires": expires, "sig": signature(secret, key, expires)})


def signed_url(
    secret: bytes, key: str, ttl_s: int, base_url: str = "", now: float | None = None
) -> str:
    """The signed link to `key`, valid for `ttl_s` seconds."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"{base_url}{ARTIFACTS_PATH}{quote(key)}?{signed_query(secret, key, expires)}"


def check_signature(
    secret: bytes, key: str, expires: str, sig: str, now: float | None = None
) -> str | None:
    """None when the link is good, else why not ('expired', 'invalid signature')."""
    if not expires.isascii() or not expires.isdigit() or len(expires) > 13:
        return "invalid signature"
    when = int(expires)
    expected = signature(secret, key, when)
    if not sig.isascii() or not hmac.compare_digest(expected, sig):
        return "invalid signature"
    if when < (time.time() if now is None else now):
        return "expired"
    return None
