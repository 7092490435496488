"""The ASGI gate in front of every route: request id, API key, rate limit, body size.

It runs before FastAPI reads or parses a body, so an unauthenticated or oversized
request costs nothing: a body announced (or found, while streaming) larger than
`limits.max_body_bytes` is a 413; a missing or wrong key a 401; a key past its
`requests_per_minute` a 429 with Retry-After naming the limit (counted in one window
that every ingress replica shares, `actors.rate_limiter`). The caller's tenant
and the request id are put in the request state and in the context variables that
stamp run records and jobs.
"""

from __future__ import annotations

import json
import secrets
from contextvars import ContextVar

from actors.rate_limiter import LocalRates, Rates
from core.errors import AuthError, QuotaExceeded
from core.tenants import current_request_id, current_tenant

# With keys on, only these answer without one (/readyz tells a keyless probe only "ready").
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
SIGNED_PREFIX = "/v1/artifacts/"
UI_PREFIX = "/ui/"  # the review board: signed in by its session cookie (serve.ui.session)
DEFAULT_MAX_BODY = 64 * 2**20
current_caller: ContextVar = ContextVar("current_caller", default=None)  # serve.auth.Caller


class _TooLarge(Exception):
    pass


class GateSettings:
    """What the gate checks against; the ingress sets it when it starts (`configure`).

    Module state rather than the app's `state`: Serve runs a copy of the app (pickled
    with the ingress class), and a gate that looked for keys on the wrong copy would
    let every request through.
    """

    api_keys = None  # serve.auth.ApiKeys; None: keys off
    max_body_bytes = DEFAULT_MAX_BODY
    rates: Rates = LocalRates()  # requests per key per minute (GET /v1/usage reads it)
    sessions = None  # serve.ui.session.SessionCheck once serve.ui is imported


SETTINGS = GateSettings()


def configure(api_keys, max_body_bytes: int, rates: Rates | None = None) -> None:
    SETTINGS.api_keys = api_keys
    SETTINGS.max_body_bytes = max_body_bytes
    if rates is not None:
        SETTINGS.rates = rates


def error_body(status: int, field: str | None, message: str, request_id: str) -> bytes:
    body = {"error": {"field": field, "message": message}, "request_id": request_id}
    return json.dumps(body).encode()


class ApiGate:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it must not buffer responses)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = "req_" + secrets.token_hex(8)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["tenant"] = None

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        reply = _Reply(send_with_id, request_id)
        try:
            caller = self._caller(scope)
            if caller is not None:
                await SETTINGS.rates.hit(caller.key_hash, caller.limits.requests_per_minute)
        except AuthError as exc:
            if _route_path(scope).startswith(UI_PREFIX):  # a person: to the sign-in page
                return await reply.redirect(scope.get("root_path", "") + "/ui/login")
            return await reply(401, "authorization", str(exc), {"www-authenticate": "Bearer"})
        except QuotaExceeded as exc:
            headers = {"retry-after": str(exc.retry_after_s)}
            return await reply(429, exc.limit, str(exc), headers)
        max_body = SETTINGS.max_body_bytes
        try:
            receive = await _bounded_body(scope, receive, max_body)
        except _TooLarge:
            message = f"request body is larger than limits.max_body_bytes = {max_body}"
            return await reply(413, "body", message)
        state["tenant"] = caller.tenant if caller else None
        state["caller"] = caller
        tenant_token = current_tenant.set(state["tenant"])
        id_token = current_request_id.set(request_id)
        caller_token = current_caller.set(caller)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_caller.reset(caller_token)
            current_tenant.reset(tenant_token)
            current_request_id.reset(id_token)

    def _caller(self, scope):
        keys = SETTINGS.api_keys
        path = _route_path(scope)
        if keys is None or not keys.enabled or path in OPEN_PATHS:
            return None
        query = scope.get("query_string", b"")
        if path.startswith(SIGNED_PREFIX) and b"sig=" in query:
            return None  # a signed link: the route checks its signature
        headers = dict(scope.get("headers", []))
        authorization = headers.get(b"authorization", b"").decode("latin-1") or None
        api_key = headers.get(b"x-api-key", b"").decode("latin-1") or None
        if path.startswith(UI_PREFIX) and SETTINGS.sessions is not None and not authorization:
            if not api_key:  # the cookie stands for the key it was signed in with
                return SETTINGS.sessions.caller(path, headers, keys)
        return keys.check(authorization, api_key)


def _route_path(scope) -> str:
    """The path the routes match: without the application's route prefix (`root_path`)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class _Reply:
    def __init__(self, send, request_id: str):
        self.send = send
        self.request_id = request_id

    async def __call__(self, status, field, message, headers=None):
        body = error_body(status, field, message, self.request_id)
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await self.send({"type": "http.response.start", "status": status, "headers": raw})
        await self.send({"type": "http.response.body", "body": body})

    async def redirect(self, location: str):
        raw = [(b"location", location.encode()), (b"content-length", b"0")]
        await self.send({"type": "http.response.start", "status": 303, "headers": raw})
        await self.send({"type": "http.response.body", "body": b""})


async def _bounded_body(scope, receive, limit: int):
    """`receive` for a body that cannot pass `limit` bytes; `_TooLarge` past it.

    A declared Content-Length is checked and the body left to stream (the server holds
    the body to it); a body of no declared length is read in full here, and replayed.
    """
    headers = dict(scope.get("headers", []))
    length = headers.get(b"content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise _TooLarge
        except ValueError:
            raise _TooLarge from None
        return receive
    if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return receive
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            chunks = None
            break
        size += len(message.get("body", b""))
        if size > limit:
            raise _TooLarge
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks) if chunks is not None else b""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
