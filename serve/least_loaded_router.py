"""Request routing for model replicas: each request goes to the least-loaded replica with room.

Serve's default router picks two replicas at random and backs off (25 ms, doubling)
when both are full. A tile job keeps exactly as many calls in flight as the replicas
take (`core.largeformat.replica_capacity`), so when one replica finishes a tile it is
often the only one with room: two random picks miss it 3 times in 4 on 8 replicas, and
the backoff leaves it idle. This router considers every running replica for every
request, so the next call goes to the free one at once. Requests are still routed in
FIFO order.

The job sends its next tile as soon as a result comes back, which is often before
Serve has counted that request as finished (its queue-length cache is decremented
when the call's stream closes, a moment after the result arrives). With every
replica full in the cache, Serve would probe every replica for its queue length (8
actor calls for one tile, all waited for); instead the request waits for the next
request of this handle to finish, up to `COMPLETION_WAIT_S`, and only probes if the
cache still shows no room (a replica busy with other callers' requests).
"""

from __future__ import annotations

import asyncio

from ray.serve.request_router import (
    FIFOMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

__all__ = ["COMPLETION_WAIT_S", "LeastLoadedRouter"]

COMPLETION_WAIT_S = 0.02


class LeastLoadedRouter(FIFOMixin, RequestRouter):
    """Every replica with room in the queue-length cache is a candidate; Serve sends to the
    one with the shortest queue."""

    _completion: asyncio.Event | None = None  # set when one of this handle's requests ends

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        """The replicas with room (after waiting for a request to finish if none has), else
        every replica, for Serve to probe; an empty list while there is none."""
        if not candidate_replicas:
            return []
        with_room = self.select_available_replicas(candidate_replicas)
        if not with_room:
            await self._next_completion(COMPLETION_WAIT_S)
            with_room = self.select_available_replicas(candidate_replicas)
        return [with_room or list(candidate_replicas)]

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        """Wake the requests waiting for room (Serve decrements the cache just after)."""
        super().on_request_completed(replica_id, internal_request_id)
        if self._completion is not None:
            self._completion.set()
            self._completion = None

    async def _next_completion(self, timeout_s: float) -> None:
        if self._completion is None:
            self._completion = asyncio.Event()
        try:
            await asyncio.wait_for(self._completion.wait(), timeout_s)
        except TimeoutError:
            return
        await asyncio.sleep(0)  # the cache's decrement was queued after the completion hook
