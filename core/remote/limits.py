"""The bound on a hosted model's calls: in flight, per minute, and paused after a 429.

`LimiterState` is the pure bookkeeping (time passed in); `AsyncLimiter` waits on
it with asyncio. One `AsyncLimiter` per hosted model serves every replica of its
deployment from a named Ray actor (`actors.remote_limiter`), so the bound holds
across replicas: each attempt takes a lease before it is sent and gives it back
when its answer is in.

- at most `max_concurrency` leases at once;
- starts spaced at least ``60 / requests_per_minute`` seconds apart, so no window
  of 60 s ever sees more than `requests_per_minute` starts (and bursts never
  trigger a provider's per-second limits);
- a 429 with `Retry-After` pauses every start until then (`cool_down`): one
  replica's 429 holds back all of them, instead of a storm of 429s;
- a lease not given back within `lease_ttl_s` (a replica that died mid-call)
  expires, so a crash never shrinks the bound for good.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AsyncLimiter", "LimiterState"]


@dataclass
class LimiterState:
    """Leases in flight and the next allowed start; every method takes the time."""

    max_concurrency: int
    requests_per_minute: float
    lease_ttl_s: float = 600.0
    leases: dict[str, float] = field(default_factory=dict)  # lease -> expiry time
    next_start: float = float("-inf")
    paused_until: float = float("-inf")
    max_in_flight: int = 0
    starts: int = 0
    expired: int = 0
    cool_downs: int = 0
    _ids: Any = field(default_factory=itertools.count, repr=False)

    @property
    def interval_s(self) -> float:
        return 60.0 / self.requests_per_minute

    def try_acquire(self, now: float) -> tuple[str | None, float]:
        """A new lease, or None and how long to wait before trying again."""
        self._expire(now)
        if len(self.leases) >= self.max_concurrency:
            return None, max(min(self.leases.values()) - now, 0.0)
        wait = max(self.paused_until - now, self.next_start - now)
        if wait > 0:
            return None, wait
        lease = f"lease-{next(self._ids)}"
        self.leases[lease] = now + self.lease_ttl_s
        self.next_start = now + self.interval_s
        self.starts += 1
        self.max_in_flight = max(self.max_in_flight, len(self.leases))
        return lease, 0.0

    def release(self, lease: str) -> bool:
        """Give a lease back; False if it had expired (or was never given)."""
        return self.leases.pop(lease, None) is not None

    def cool_down(self, now: float, seconds: float) -> None:
        """No new start for `seconds` from `now` (a 429's Retry-After)."""
        self.paused_until = max(self.paused_until, now + seconds)
        self.cool_downs += 1

    def configure(self, max_concurrency: int, requests_per_minute: float, ttl_s: float) -> None:
        """Apply a changed config (a redeploy) without forgetting leases in flight."""
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.lease_ttl_s = ttl_s

    def stats(self) -> dict[str, float]:
        """Figures to measure the bound by."""
        return {
            "in_flight": len(self.leases),
            "max_in_flight": self.max_in_flight,
            "starts": self.starts,
            "expired": self.expired,
            "cool_downs": self.cool_downs,
            "max_concurrency": self.max_concurrency,
            "requests_per_minute": self.requests_per_minute,
        }

    def _expire(self, now: float) -> None:
        for lease, expiry in list(self.leases.items()):
            if expiry <= now:
                del self.leases[lease]
                self.expired += 1


class AsyncLimiter:
    """Waits for leases of a `LimiterState` on the running event loop."""

    def __init__(self, state: LimiterState, clock: Callable[[], float] = time.monotonic):
        self.state = state
        self.clock = clock
        self._changed = asyncio.Condition()

    async def acquire(self) -> str:
        """A lease, once the bound allows one (waits as long as it takes)."""
        async with self._changed:
            while True:
                lease, wait = self.state.try_acquire(self.clock())
                if lease is not None:
                    return lease
                try:  # woken by a release, or when the wait is over
                    await asyncio.wait_for(self._changed.wait(), timeout=max(wait, 0.001))
                except TimeoutError:
                    pass

    async def release(self, lease: str) -> bool:
        async with self._changed:
            released = self.state.release(lease)
            self._changed.notify_all()
        return released

    async def cool_down(self, seconds: float) -> None:
        async with self._changed:
            self.state.cool_down(self.clock(), seconds)

    async def configure(self, max_concurrency: int, rpm: float, ttl_s: float) -> None:
        async with self._changed:
            self.state.configure(max_concurrency, rpm, ttl_s)
            self._changed.notify_all()

    async def stats(self) -> dict[str, float]:
        return self.state.stats()
