"""The model replicas' request router: the least-loaded replica with room, counting requests
chosen but not yet sent; no probing while one of the handle's own requests is about to end
(no Ray: the router and its cache only)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
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


@pytest.fixture
def clock() -> dict[str, float]:
    """A clock moved by hand, for `router_with(..., clock=...)`: no real time passes."""
    return {"now": 100.0}


def router_with(
    queue_lengths: list[int],
    max_ongoing_requests: int = 1,
    completion_wait_s: float = least_loaded_router.COMPLETION_WAIT_S,
    clock: dict[str, float] | None = None,
) -> tuple[LeastLoadedRouter, list[Replica]]:
    """A router whose cache holds `queue_lengths`; with `clock`, it reads that clock and
    waits for no completion."""
    router = LeastLoadedRouter(
        DEPLOYMENT, DeploymentHandleSource.UNKNOWN, use_replica_queue_len_cache=True
    )
    router.completion_wait_s = completion_wait_s
    if clock is not None:
        router.clock = lambda: clock["now"]
        router.completion_wait_s = 0.0
    replicas = [
        Replica(ReplicaID(f"r{index}", DEPLOYMENT), max_ongoing_requests)
        for index in range(len(queue_lengths))
    ]
    for replica, length in zip(replicas, queue_lengths, strict=True):
        router.on_new_queue_len_info(replica.replica_id, length)
    return router, replicas


def test_only_replicas_with_room_are_candidates():
    router, replicas = router_with([1, 0, 1])
    assert asyncio.run(router.choose_replicas(replicas)) == [[replicas[1]]]
    assert asyncio.run(router.choose_replicas([])) == []


def test_with_every_replica_full_the_request_waits_for_one_to_finish_instead_of_probing():
    """The finished request's replica is the only candidate: no probe of the full ones."""
    router, replicas = router_with([1, 1, 1], completion_wait_s=30.0)

    async def choose_while_one_finishes() -> list[list[Replica]]:
        choosing = asyncio.create_task(router.choose_replicas(replicas))
        await asyncio.sleep(0.01)
        assert not choosing.done()  # every replica is full: it waits
        router.on_request_completed(replicas[2].replica_id, "request-1")
        router.decrement_queue_len_cache(replicas[2].replica_id)  # Serve's next callback
        return await asyncio.wait_for(choosing, 10)

    assert asyncio.run(choose_while_one_finishes()) == [[replicas[2]]]


def test_when_nothing_finishes_in_time_every_replica_is_left_to_serves_probe():
    """Replicas busy with other callers' requests: Serve probes them all, as it would."""
    router, replicas = router_with([2, 1, 1], completion_wait_s=0.01)
    assert asyncio.run(router.choose_replicas(replicas)) == [replicas]


def choose(router: LeastLoadedRouter, replicas: list[Replica]) -> list[Replica]:
    """One routing decision: the replica Serve tries first."""
    return asyncio.run(router.choose_replicas(replicas))[0]


def test_a_burst_routed_before_any_send_spreads_over_the_replicas(clock):
    """Serve counts a request only once it is sent; a job's first tiles are all routed
    before that, and must not pile onto the replica that looked emptiest."""
    router, replicas = router_with([0, 0, 0], max_ongoing_requests=2, clock=clock)
    assert [choose(router, replicas) for _ in range(4)] == [
        [replicas[0]],
        [replicas[1]],
        [replicas[2]],
        [replicas[0]],
    ]


def test_the_others_with_room_follow_fewest_first_for_when_the_first_is_found_full():
    router, replicas = router_with([2, 0, 3, 1], max_ongoing_requests=3)
    ranks = asyncio.run(router.choose_replicas(replicas))
    assert ranks == [[replicas[1]], [replicas[3], replicas[0]]]


def test_a_sent_request_is_counted_once(clock):
    """Sending moves a request from the router's unsent count into Serve's cache."""
    router, replicas = router_with([0, 0], clock=clock)
    sent = [replica.replica_id for replica in replicas]

    async def decisions() -> list[list[list[Replica]]]:
        made = [await router.choose_replicas(replicas) for _ in range(3)]
        for replica_id in sent:
            router.on_send_request(replica_id)
        made.append(await router.choose_replicas(replicas))
        router.decrement_queue_len_cache(sent[1])
        made.append(await router.choose_replicas(replicas))
        return made

    assert asyncio.run(decisions()) == [
        [[replicas[0]], [replicas[1]]],
        [[replicas[1]]],
        [replicas],  # both taken, none sent yet: Serve probes
        [replicas],  # still full once sent: counted once, not twice
        [[replicas[1]]],
    ]


def test_a_request_chosen_but_never_sent_is_forgotten(clock):
    """A request cancelled between routing and sending holds its replica only for
    `RESERVATION_S`."""
    router, replicas = router_with([0, 1], clock=clock)
    assert choose(router, replicas) == [replicas[0]]
    clock["now"] += least_loaded_router.RESERVATION_S / 2
    assert choose(router, replicas) == replicas  # still held: Serve probes
    clock["now"] += least_loaded_router.RESERVATION_S
    assert choose(router, replicas) == [replicas[0]]
