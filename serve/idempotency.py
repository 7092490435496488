"""The `Idempotency-Key` header, held for the request that first sends it.

A route asks `claimed(body)` first. It gets the id that an earlier request with the
key and this body created (it answers with that), or None: the key is then held
for this request, and another request with it gets a 409 with Retry-After until
this one ends. What the route creates is claimed under the key (`JobDesk`'s
`claim` and `admit`); a request that ends having created nothing (an error, a
refusal) lets the key go, so a retry can use it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header

from core.errors import RequestError
from core.jobs.store import JobStore
from core.tenants import current_tenant
from serve.api_app import Context

MAX_KEY_CHARS = 255


class IdempotencyHold:
    """One request's `Idempotency-Key` (None without the header) and whether it holds it."""

    def __init__(self, key: str | None, jobs: JobStore):
        self.key = key
        self.jobs = jobs
        self.holder = secrets.token_hex(16)
        self.owner = current_tenant.get()
        self.held = False

    async def claimed(self, body: dict) -> str | None:
        """The id this key created before with `body`; None, and the key held, when unused."""
        if self.key is None:
            return None
        if not self.key or len(self.key) > MAX_KEY_CHARS:
            raise RequestError("Idempotency-Key", f"must be 1 to {MAX_KEY_CHARS} characters")
        found = await asyncio.to_thread(self.jobs.reserve, self.key, self.owner, body, self.holder)
        self.held = found is None
        return found

    async def let_go(self) -> None:
        """Free the key unless this request claimed it for something it created."""
        if self.held:
            await asyncio.to_thread(self.jobs.release, self.key, self.owner, self.holder)


async def _hold(
    ctx: Context, idempotency_key: str | None = Header(None)
) -> AsyncIterator[IdempotencyHold]:
    hold = IdempotencyHold(idempotency_key, ctx.renders.jobs.jobs)
    try:
        yield hold
    finally:
        await hold.let_go()


Hold = Annotated[IdempotencyHold, Depends(_hold, scope="function")]  # let go before answering
