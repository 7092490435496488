"""Request routing for model replicas: each request goes to the least-loaded replica with room.

Serve's default router picks two replicas at random and backs off (25 ms, doubling)
when both are full. A tile job keeps exactly as many calls in flight as the replicas
take (`core.largeformat.replica_capacity`), so when one replica finishes a tile it is
often the only one with room: two random picks miss it 3 times in 4 on 8 replicas, and
the backoff leaves it idle. This router considers every running replica for every
request (their queue lengths come from Serve's cache, probed when unknown or full), so
the next call goes to the free one at once. Requests are still routed in FIFO order.
"""

from __future__ import annotations

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica

__all__ = ["LeastLoadedRouter"]


class LeastLoadedRouter(FIFOMixin, RequestRouter):
    """Every running replica is a candidate; Serve sends to the one with the shortest queue."""

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        """One rank holding every replica (an empty list while there is none)."""
        return [list(candidate_replicas)] if candidate_replicas else []
