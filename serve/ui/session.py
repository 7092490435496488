"""Review-board sessions: a signed, expiring cookie that stands for an API key.

Signing in with a key sets ``rc_session`` (HttpOnly, SameSite=Strict): the key's hash,
a random nonce and an expiry, signed like an artifact link (`core.links.signature`)
with a key derived from the link secret (`serve.links.LinkSigner.secret`), so the
cluster keeps no second secret. The gate (`serve.gate`) turns a valid cookie into the
key's `Caller` on `/ui/` paths, looking the hash up among the accepted keys on every
request: a revoked key ends its sessions at once. Every form carries a CSRF token
derived from the session's nonce; POSTs without the right one are refused. Without
configured keys (local mode) the board is open, and visitors still get an anonymous
session, so forms keep their CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie

from core.errors import AuthError
from core.links import check_signature, signature
from serve.auth import Caller

COOKIE = "rc_session"
SESSION_TTL_S = 8 * 3600
ANONYMOUS = "-"
UI_PREFIX = "/ui/"
OPEN_UI_PATHS = frozenset({"/ui/login"})


@dataclass(frozen=True)
class Session:
    """A parsed, correctly signed and unexpired session cookie."""

    key_hash: str  # ANONYMOUS: not signed in
    nonce: str
    expires: int

    @property
    def signed_in(self) -> bool:
        return self.key_hash != ANONYMOUS


def _secret_of(link_secret: bytes) -> bytes:
    """The session key: derived from the link secret, so a link never passes as a session."""
    return hmac.new(link_secret, b"render-cluster ui session", hashlib.sha256).digest()


def make_token(link_secret: bytes, key_hash: str, now: float | None = None) -> str:
    """A new session token for the key with SHA-256 `key_hash` (ANONYMOUS: no key)."""
    nonce = secrets.token_hex(16)
    expires = int((time.time() if now is None else now) + SESSION_TTL_S)
    payload = f"{key_hash}.{nonce}"
    return f"{payload}.{expires}.{signature(_secret_of(link_secret), payload, expires)}"


def parse_token(link_secret: bytes, token: str | None, now: float | None = None) -> Session | None:
    """The session in `token`; None when it is missing, malformed, forged or expired."""
    if not token or len(token) > 300:
        return None
    parts = token.split(".")
    if len(parts) != 4:
        return None
    key_hash, nonce, expires, sig = parts
    payload = f"{key_hash}.{nonce}"
    if check_signature(_secret_of(link_secret), payload, expires, sig, now) is not None:
        return None
    return Session(key_hash=key_hash, nonce=nonce, expires=int(expires))


def csrf_token(link_secret: bytes, session: Session) -> str:
    """The CSRF token every form of `session` carries."""
    message = f"csrf.{session.key_hash}.{session.nonce}".encode()
    return hmac.new(_secret_of(link_secret), message, hashlib.sha256).hexdigest()


def csrf_ok(link_secret: bytes, session: Session | None, offered: str | None) -> bool:
    if session is None or not offered or not offered.isascii():
        return False
    return hmac.compare_digest(csrf_token(link_secret, session), offered)


def cookie_value(headers: dict[bytes, bytes]) -> str | None:
    """The session cookie's value in raw ASGI headers, if any."""
    raw = headers.get(b"cookie", b"").decode("latin-1")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header: as if there were none
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


class SessionCheck:
    """What the gate asks on `/ui/` paths: the caller of a request's session cookie.

    `secret` returns the link secret (the ingress has read it when it started).
    """

    def __init__(self, secret):
        self.secret = secret

    def caller(self, path: str, headers: dict[bytes, bytes], keys):
        """The key's `Caller` (None on the sign-in page); `AuthError` when not signed in."""
        if path in OPEN_UI_PATHS:
            return None
        session = parse_token(self.secret(), cookie_value(headers))
        if session is None or not session.signed_in:
            raise AuthError("sign in with an API key")
        entry = keys.entries().get(session.key_hash)
        if entry is None:
            raise AuthError("the session's API key is no longer valid")
        return Caller(tenant=entry.tenant, key_hash=session.key_hash, limits=entry.limits)
