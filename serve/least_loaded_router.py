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

Serve counts a request in that cache only once it is sent, and it routes a burst of
requests (a job's first tiles) before sending any, so every request of the burst would
find the same replica emptiest and replicas would fill one after another (the 8th of 8
got its first tile 80 ms after the first at `max_ongoing_requests` 4). A replica chosen
for a request counts it at once, until Serve's cache does (`on_send_request`), so the
burst's first requests go to as many replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ray.serve.request_router import (
    FIFOMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

__all__ = ["COMPLETION_WAIT_S", "RESERVATION_S", "LeastLoadedRouter"]

COMPLETION_WAIT_S = 0.02

RESERVATION_S = 0.5
"""How long a replica counts a request chosen for it before Serve's cache does. The send
follows within milliseconds; a request cancelled before it is sent is forgotten then."""


class LeastLoadedRouter(FIFOMixin, RequestRouter):
    """Each request goes to the replica with the fewest requests, counting those sent (Serve's
    queue-length cache) and those chosen for it but not yet sent."""

    completion_wait_s: float = COMPLETION_WAIT_S
    reservation_s: float = RESERVATION_S
    clock: Callable[[], float] = staticmethod(time.monotonic)
    _completion: asyncio.Event | None = None  # set when one of this handle's requests ends
    _chosen: dict[ReplicaID, list[float]] | None = None  # replica -> unsent requests' expiry

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        """The least-loaded replica with room, then the others with room (Serve tries them
        if it finds the first full), waiting up to `completion_wait_s` for requests to
        finish if none has room; else every replica, for Serve to probe; an empty list
        while there is none."""
        if not candidate_replicas:
            return []
        ranked = self._with_room(candidate_replicas)
        deadline = self.clock() + self.completion_wait_s
        while not ranked and (left := deadline - self.clock()) > 0:
            await self._next_completion(left)  # another waiter may take the freed room
            ranked = self._with_room(candidate_replicas)
        if not ranked:
            return [list(candidate_replicas)]
        first, *others = ranked
        self._unsent().setdefault(first.replica_id, []).append(self.clock() + self.reservation_s)
        return [[first], others] if others else [[first]]

    def on_send_request(self, replica_id: ReplicaID) -> None:
        """Serve's cache counts the request now: the replica's oldest unsent one goes."""
        super().on_send_request(replica_id)
        unsent = self._unsent().get(replica_id)
        if unsent:
            unsent.pop(0)

    def _with_room(self, candidates: list[RunningReplica]) -> list[RunningReplica]:
        """The replicas whose requests (sent and unsent) are below their limit, fewest first
        (ties in the candidates' order)."""
        unsent = self._unsent_counts()
        loads = []
        for replica in candidates:
            sent = self.replica_queue_len_cache.get(replica.replica_id) or 0
            load = sent + unsent.get(replica.replica_id, 0)
            if load < replica.max_ongoing_requests:
                loads.append((load, replica))
        return [replica for _, replica in sorted(loads, key=lambda pair: pair[0])]

    def _unsent(self) -> dict[ReplicaID, list[float]]:
        if self._chosen is None:
            self._chosen = {}
        return self._chosen

    def _unsent_counts(self) -> dict[ReplicaID, int]:
        """Unsent requests per replica, the expired ones dropped (and replicas left with none)."""
        now = self.clock()
        live = {
            replica_id: [expiry for expiry in expiries if expiry >= now]
            for replica_id, expiries in self._unsent().items()
        }
        self._chosen = {replica_id: expiries for replica_id, expiries in live.items() if expiries}
        return {replica_id: len(expiries) for replica_id, expiries in self._chosen.items()}

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
