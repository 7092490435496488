"""The `Idempotency-Key` header, held for the request that first sends it.

A route asks `claimed(body)` first. It gets the id that an earlier request with the
key and this body created (it answers with that), or None: the key is then held
for this request, and another request with it gets a 409 with Retry-After until
this one ends. What the route creates is claimed under the key (`JobDesk`'s
`claim` and `admit`); a request that ends having created nothing (an error, a
refusal) lets the key go, so a retry can use it. A hold older than
`core.jobs.store.HELD_FOR_S` is taken for a dead request's, so a route whose work
may run longer keeps it renewed (`kept`) until it claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header

from core.errors import RequestError
from core.jobs.store import HELD_FOR_S, JobStore
from core.tenants import current_tenant
from serve.api_app import Context

logger = logging.getLogger(__name__)

MAX_KEY_CHARS = 255
RENEW_EVERY_S = HELD_FOR_S / 3  # a held key's renewal while its request runs


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

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the hold every `RENEW_EVERY_S` while the body runs (a render longer than
        `HELD_FOR_S` keeps its key); no renewal is left running when it ends."""
        if not self.held:
            yield
            return
        stop = asyncio.Event()
        renewing = asyncio.create_task(self._renew_until(stop))
        try:
            yield
        finally:
            stop.set()
            await renewing

    async def _renew_until(self, stop: asyncio.Event) -> None:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), RENEW_EVERY_S)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.jobs.renew, self.key, self.owner, self.holder)
            except Exception:  # the store failed this once: the render goes on, next try later
                logger.warning("could not renew an Idempotency-Key hold", exc_info=True)

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
