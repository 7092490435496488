"""The limiter every replica of a hosted model shares: a small named Ray actor.

Serve starts N replicas of a hosted model's deployment; a bound kept inside each
replica would let N x max_concurrency calls reach the provider. So the bound
lives in one detached actor per (application, model), named
``remote-limiter:<app>:<model>`` in namespace `LIMITER_NAMESPACE`, and every
replica takes a lease from it before each attempt (`core.remote.limits`). Two
actor calls per attempt cost about a millisecond each, nothing beside a
provider's seconds.

The actor is detached so that it outlives any one replica; a replica that finds
it gone (killed, its node lost) starts a new one under the same name. Leases of a
dead replica expire after `lease_ttl_s`.
"""

from __future__ import annotations

from typing import Any

import ray

from core.remote.config import RemoteConfig
from core.remote.limits import AsyncLimiter, LimiterState

__all__ = ["LIMITER_NAMESPACE", "ProviderLimiter", "SharedLimiter", "limiter_name"]

LIMITER_NAMESPACE = "render-cluster-limits"
LEASE_MARGIN_S = 60.0  # a lease outlives its attempt's timeout by this much


def limiter_name(app_name: str, model_name: str) -> str:
    return f"remote-limiter:{app_name}:{model_name}"


def lease_ttl(remote: RemoteConfig) -> float:
    return remote.timeout_s + LEASE_MARGIN_S


@ray.remote(num_cpus=0, max_concurrency=10000)
class ProviderLimiter:
    """One hosted model's `AsyncLimiter`, shared by its replicas."""

    def __init__(self, max_concurrency: int, requests_per_minute: float, lease_ttl_s: float):
        state = LimiterState(max_concurrency, requests_per_minute, lease_ttl_s)
        self.limiter = AsyncLimiter(state)

    async def acquire(self) -> str:
        return await self.limiter.acquire()

    async def release(self, lease: str) -> bool:
        return await self.limiter.release(lease)

    async def cool_down(self, seconds: float) -> None:
        await self.limiter.cool_down(seconds)

    async def configure(self, max_concurrency: int, rpm: float, ttl_s: float) -> None:
        await self.limiter.configure(max_concurrency, rpm, ttl_s)

    async def stats(self) -> dict[str, float]:
        return await self.limiter.stats()


class SharedLimiter:
    """A replica's view of its model's `ProviderLimiter` (the caller's `Limiter`)."""

    def __init__(self, app_name: str, model_name: str, remote: RemoteConfig):
        self.name = limiter_name(app_name, model_name)
        self.remote = remote
        self._actor: Any = None

    def _get(self) -> Any:
        if self._actor is None:
            remote = self.remote
            self._actor = ProviderLimiter.options(
                name=self.name, namespace=LIMITER_NAMESPACE, lifetime="detached", get_if_exists=True
            ).remote(remote.max_concurrency, remote.requests_per_minute, lease_ttl(remote))
        return self._actor

    async def start(self) -> None:
        """Find or start the actor and give it this config (a redeploy may change it)."""
        remote = self.remote
        await self._call(
            "configure", remote.max_concurrency, remote.requests_per_minute, lease_ttl(remote)
        )

    async def acquire(self) -> str:
        return await self._call("acquire")

    async def release(self, lease: str) -> bool:
        return await self._call("release", lease)

    async def cool_down(self, seconds: float) -> None:
        await self._call("cool_down", seconds)

    async def stats(self) -> dict[str, float]:
        return await self._call("stats")

    async def _call(self, method: str, *args: Any) -> Any:
        """Call the actor, starting a new one once if it died."""
        try:
            return await getattr(self._get(), method).remote(*args)
        except ray.exceptions.RayActorError:
            self._actor = None
            return await getattr(self._get(), method).remote(*args)
