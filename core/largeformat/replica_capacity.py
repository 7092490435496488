"""How many calls a job keeps in flight: what the model's running replicas take at once.

Calls beyond replicas x `max_ongoing_requests` would wait in the Serve handle,
which retries them with a backoff that leaves replicas idle (and with a
`max_queued_requests` bound, refuses them). So a job sends exactly as many as
the replicas take, handing the next one out the moment one finishes, and
recounts the replicas in the background as the autoscaler changes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["REFRESH_S", "ReplicaCapacity"]

REFRESH_S = 1.0

ReplicaCount = Callable[[], Awaitable[int]]


class ReplicaCapacity:
    """Calls in flight: `cap`, or replicas x `per_replica` when both are known."""

    def __init__(self, cap: int, per_replica: int = 0, replicas: ReplicaCount | None = None):
        self.cap = cap
        self.per_replica = per_replica
        self.replicas = replicas
        self._running: int | None = None
        self._refreshed = 0.0
        self._refresh: asyncio.Task | None = None

    async def limit(self) -> int:
        """The calls to keep in flight now (at least 1). The replica count is taken once,
        then refreshed in the background every `REFRESH_S`, never waited on again."""
        if self.replicas is None or not self.per_replica:
            return self.cap
        if self._running is None:
            self._running = await self.replicas()
            self._refreshed = time.monotonic()
        elif time.monotonic() - self._refreshed > REFRESH_S and (
            self._refresh is None or self._refresh.done()
        ):
            self._refreshed = time.monotonic()
            self._refresh = asyncio.create_task(self._count())
        return max(1, min(self.cap, max(1, self._running) * self.per_replica))

    async def _count(self) -> None:
        assert self.replicas is not None
        try:
            self._running = await self.replicas()
        except Exception:  # keep the last count; ask again later
            pass
