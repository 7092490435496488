import asyncio

from core.largeformat import replica_capacity
from core.largeformat.replica_capacity import ReplicaCapacity


def test_capacity_follows_the_running_replicas_counted_in_the_background(monkeypatch):
    monkeypatch.setattr(replica_capacity, "REFRESH_S", 0.0)
    running = {"count": 2}
    asked = []

    async def replicas() -> int:
        asked.append(running["count"])
        return running["count"]

    async def scenario() -> list[int]:
        capacity = ReplicaCapacity(cap=10, per_replica=2, replicas=replicas)
        limits = [await capacity.limit()]  # counted once, waited on
        running["count"] = 3
        limits.append(await capacity.limit())  # the recount runs in the background
        await asyncio.sleep(0.01)
        limits.append(await capacity.limit())
        running["count"] = 9
        await capacity.limit()
        await asyncio.sleep(0.01)
        limits.append(await capacity.limit())  # never above the cap
        running["count"] = 0
        await capacity.limit()
        await asyncio.sleep(0.01)
        limits.append(await capacity.limit())  # none running yet: as if one were
        return limits

    assert asyncio.run(scenario()) == [4, 4, 6, 10, 2]
    assert asked[0] == 2


def test_without_a_replica_count_the_cap_is_the_limit():
    assert asyncio.run(ReplicaCapacity(7).limit()) == 7
    assert asyncio.run(ReplicaCapacity(7, per_replica=2).limit()) == 7
