"""The shared bound: concurrency, spacing of starts, a 429's pause, expiry of lost leases."""

from __future__ import annotations

import asyncio
import time

from core.remote.limits import AsyncLimiter, LimiterState


def test_at_most_max_concurrency_leases():
    state = LimiterState(max_concurrency=2, requests_per_minute=60_000)
    first, _ = state.try_acquire(0.0)
    second, _ = state.try_acquire(1.0)
    third, wait = state.try_acquire(2.0)
    assert first and second and third is None and wait > 0
    assert state.release(first)
    assert state.try_acquire(2.0)[0] is not None
    assert state.max_in_flight == 2


def test_starts_are_spaced_by_the_rate():
    state = LimiterState(max_concurrency=100, requests_per_minute=60)  # one a second
    lease, _ = state.try_acquire(10.0)
    assert lease is not None
    none, wait = state.try_acquire(10.25)
    assert none is None and wait == 0.75
    assert state.try_acquire(11.0)[0] is not None


def test_never_more_than_the_rate_in_any_minute():
    state = LimiterState(max_concurrency=1000, requests_per_minute=30)
    now, starts = 0.0, []
    while now < 300:
        lease, wait = state.try_acquire(now)
        if lease is not None:
            starts.append(now)
            state.release(lease)
        now += max(wait, 0.01)
    for start in starts:
        assert sum(start <= other < start + 60 for other in starts) <= 30


def test_a_cool_down_pauses_every_start():
    state = LimiterState(max_concurrency=10, requests_per_minute=60_000)
    state.cool_down(5.0, 2.0)
    assert state.try_acquire(6.0) == (None, 1.0)
    assert state.try_acquire(7.0)[0] is not None


def test_a_lost_lease_expires():
    state = LimiterState(max_concurrency=1, requests_per_minute=60_000, lease_ttl_s=30)
    lost, _ = state.try_acquire(0.0)
    assert state.try_acquire(10.0)[0] is None
    assert state.try_acquire(30.0)[0] is not None
    assert state.expired == 1 and not state.release(lost)


def test_configure_keeps_the_leases_in_flight():
    state = LimiterState(max_concurrency=1, requests_per_minute=60_000)
    state.try_acquire(0.0)
    state.configure(2, 60_000, 600)
    assert state.try_acquire(1.0)[0] is not None
    assert state.stats()["in_flight"] == 2


def test_async_waiters_never_exceed_the_bound_and_all_get_through():
    async def main() -> tuple[int, int]:
        limiter = AsyncLimiter(LimiterState(max_concurrency=3, requests_per_minute=600_000))
        in_flight, most, done = 0, 0, 0

        async def work() -> None:
            nonlocal in_flight, most, done
            lease = await limiter.acquire()
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            await limiter.release(lease)
            done += 1

        await asyncio.wait_for(asyncio.gather(*(work() for _ in range(30))), timeout=10)
        return most, done

    assert asyncio.run(main()) == (3, 30)


def test_async_waiters_respect_the_spacing():
    async def main() -> list[float]:
        limiter = AsyncLimiter(LimiterState(max_concurrency=10, requests_per_minute=1200))
        starts = []

        async def start() -> None:
            lease = await limiter.acquire()
            starts.append(time.monotonic())
            await limiter.release(lease)

        await asyncio.wait_for(asyncio.gather(*(start() for _ in range(4))), timeout=10)
        return sorted(starts)

    starts = asyncio.run(main())
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.05 - 0.005  # 60 / 1200 s apart
