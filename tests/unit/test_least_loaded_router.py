"""The model replicas' request router: the least-loaded replica with room, no probing while
one of the handle's own requests is about to end (no Ray: the router and its cache only)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ray.serve._private.common import DeploymentHandleSource, DeploymentID
from ray.serve.request_router import ReplicaID

from serve import least_loaded_router
from serve.least_loaded_router import LeastLoadedRouter

DEPLOYMENT = DeploymentID(name="quality", app_name="render-cluster")


@dataclass(frozen=True)
class Replica:
    """What the router reads of a running replica."""

    replica_id: ReplicaID
    max_ongoing_requests: int = 1


def router_with(queue_lengths: list[int]) -> tuple[LeastLoadedRouter, list[Replica]]:
    router = LeastLoadedRouter(
        DEPLOYMENT, DeploymentHandleSource.UNKNOWN, use_replica_queue_len_cache=True
    )
    replicas = [Replica(ReplicaID(f"r{index}", DEPLOYMENT)) for index in range(len(queue_lengths))]
    for replica, length in zip(replicas, queue_lengths, strict=True):
        router.on_new_queue_len_info(replica.replica_id, length)
    return router, replicas


def test_only_replicas_with_room_are_candidates():
    router, replicas = router_with([1, 0, 1])
    assert asyncio.run(router.choose_replicas(replicas)) == [[replicas[1]]]
    assert asyncio.run(router.choose_replicas([])) == []


def test_with_every_replica_full_the_request_waits_for_one_to_finish_instead_of_probing(
    monkeypatch,
):
    """The finished request's replica is the only candidate: no probe of the full ones."""
    monkeypatch.setattr(least_loaded_router, "COMPLETION_WAIT_S", 30.0)
    router, replicas = router_with([1, 1, 1])

    async def choose_while_one_finishes() -> list[list[Replica]]:
        choosing = asyncio.create_task(router.choose_replicas(replicas))
        await asyncio.sleep(0.01)
        assert not choosing.done()  # every replica is full: it waits
        router.on_request_completed(replicas[2].replica_id, "request-1")
        router.decrement_queue_len_cache(replicas[2].replica_id)  # Serve's next callback
        return await asyncio.wait_for(choosing, 10)

    assert asyncio.run(choose_while_one_finishes()) == [[replicas[2]]]


def test_when_nothing_finishes_in_time_every_replica_is_left_to_serves_probe(monkeypatch):
    """Replicas busy with other callers' requests: Serve probes them all, as it would."""
    monkeypatch.setattr(least_loaded_router, "COMPLETION_WAIT_S", 0.01)
    router, replicas = router_with([2, 1, 1])
    assert asyncio.run(router.choose_replicas(replicas)) == [replicas]
