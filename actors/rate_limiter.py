"""Per-key request rates that every ingress replica of an application shares.

The chart runs two or more ingress replicas; a rolling-minute window kept in each
would let a key make N x `requests_per_minute` requests. So the window lives in
one detached actor per application, named ``request-rates:<app>`` in namespace
`LIMITER_NAMESPACE` (as `actors.remote_limiter` does for hosted models), and the
gate asks it before each keyed request: one actor call, about a millisecond.

`LocalRates` is the same window in this process: the API in-process (no Ray), and
the fallback when the actor cannot be reached (a limit per replica beats none).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import ray

from actors.remote_limiter import LIMITER_NAMESPACE
from core.errors import QuotaExceeded
from core.usage import RateWindow

__all__ = ["LocalRates", "RequestRates", "Rates", "SharedRates", "rates_for", "rates_name"]

logger = logging.getLogger("ray.serve")
LIMIT = "requests_per_minute"


class Rates(Protocol):
    """What the gate and `GET /v1/usage` ask of a rate window."""

    async def hit(self, key: str, limit: int | None) -> None: ...

    async def count(self, key: str) -> int: ...


def rates_name(app_name: str) -> str:
    return f"request-rates:{app_name}"


def _retry_after(window: RateWindow, key: str, limit: int | None) -> int | None:
    """Count one request; None when admitted, else the seconds until one would be."""
    try:
        window.hit(key, limit)
    except QuotaExceeded as exc:
        return exc.retry_after_s
    return None


class LocalRates:
    """The window in this process."""

    def __init__(self) -> None:
        self.window = RateWindow()

    async def hit(self, key: str, limit: int | None) -> None:
        self.window.hit(key, limit)

    async def count(self, key: str) -> int:
        return self.window.count(key)


@ray.remote(num_cpus=0, max_concurrency=1)
class RequestRates:
    """One application's window, shared by its ingress replicas (one call at a time)."""

    def __init__(self) -> None:
        self.window = RateWindow()

    def hit(self, key: str, limit: int | None) -> int | None:
        return _retry_after(self.window, key, limit)

    def count(self, key: str) -> int:
        return self.window.count(key)


class SharedRates:
    """An ingress replica's view of its application's `RequestRates` actor."""

    def __init__(self, app_name: str, fallback: LocalRates | None = None):
        self.name = rates_name(app_name)
        self.fallback = fallback or LocalRates()
        self._actor: Any = None

    async def hit(self, key: str, limit: int | None) -> None:
        retry = await self._call("hit", key, limit)
        if retry is not None:
            raise QuotaExceeded(LIMIT, limit, retry)

    async def count(self, key: str) -> int:
        return await self._call("count", key)

    def _get(self) -> Any:
        if self._actor is None:
            self._actor = RequestRates.options(
                name=self.name, namespace=LIMITER_NAMESPACE, lifetime="detached", get_if_exists=True
            ).remote()
        return self._actor

    async def _call(self, method: str, *args: Any) -> Any:
        """Ask the actor (a new one once if it died); this replica's window if that fails."""
        for _ in range(2):
            try:
                return await getattr(self._get(), method).remote(*args)
            except ray.exceptions.RayActorError:
                self._actor = None
            except ray.exceptions.RayError:
                break
        logger.warning("%s unreachable: counting requests in this replica only", self.name)
        local = getattr(self.fallback, method)
        return await local(*args)


def rates_for(app_name: str) -> Rates:
    """The shared window under Ray, this process's without it."""
    return SharedRates(app_name) if ray.is_initialized() else LocalRates()
