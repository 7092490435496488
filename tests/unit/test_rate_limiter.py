"""Request rates shared by ingress replicas: the logic, with a fake actor (no Ray)."""

from __future__ import annotations

import asyncio

import pytest
import ray

from actors import rate_limiter
from actors.rate_limiter import LocalRates, SharedRates, _retry_after, rates_for
from core.errors import QuotaExceeded
from core.usage import RateWindow


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        async def answer():
            return self.fn(*args)

        return answer()


class FakeActor:
    """What `RequestRates` answers, in this process; `fail` raises instead."""

    def __init__(self, fail: Exception | None = None):
        self.window = RateWindow()
        self.fail = fail
        self.hit = _Method(self._hit)
        self.count = _Method(self.window.count)

    def _hit(self, key, limit):
        if self.fail is not None:
            raise self.fail
        return _retry_after(self.window, key, limit)


def replica(actor: FakeActor) -> SharedRates:
    """One ingress replica's view, reaching `actor` (as every replica reaches the one actor)."""
    rates = SharedRates("app")
    rates._get = lambda: actor  # type: ignore[method-assign]
    return rates


class Restarting(SharedRates):
    """A view whose `_get` starts the next of `actors` when it has none."""

    def __init__(self, actors: list[FakeActor]):
        super().__init__("app")
        self.started = iter(actors)

    def _get(self):
        if self._actor is None:
            self._actor = next(self.started)
        return self._actor


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_retry_after_is_none_while_admitted_then_the_seconds_to_wait():
    window = RateWindow()
    assert _retry_after(window, "k", 2) is None
    assert _retry_after(window, "k", 2) is None
    assert 1 <= _retry_after(window, "k", 2) <= 60
    assert window.count("k") == 2  # the refused request is not counted


def test_two_replicas_share_one_limit():
    actor = FakeActor()
    a, b = replica(actor), replica(actor)

    async def scenario():
        await a.hit("k", 3)
        await b.hit("k", 3)
        await a.hit("k", 3)
        with pytest.raises(QuotaExceeded) as refused:
            await b.hit("k", 3)
        assert refused.value.limit == "requests_per_minute" and refused.value.retry_after_s >= 1
        await b.hit("other", 3)  # keys are counted apart
        return await a.count("k"), await b.count("k")

    assert run(scenario()) == (3, 3)


def test_a_dead_actor_is_started_again_once():
    dead, alive = FakeActor(fail=ray.exceptions.RayActorError()), FakeActor()
    rates = Restarting([dead, alive])
    run(rates.hit("k", 5))
    assert alive.window.count("k") == 1 and rates._actor is alive


def test_an_unreachable_actor_falls_back_to_this_replicas_window():
    rates = replica(FakeActor(fail=ray.exceptions.RaySystemError("gone")))
    run(rates.hit("k", 1))
    with pytest.raises(QuotaExceeded):
        run(rates.hit("k", 1))
    assert run(rates.fallback.count("k")) == 1


def test_local_rates_limit_this_process():
    rates = LocalRates()
    run(rates.hit("k", 1))
    with pytest.raises(QuotaExceeded):
        run(rates.hit("k", 1))
    assert run(rates.count("k")) == 1


def test_without_ray_the_window_is_local(monkeypatch):
    monkeypatch.setattr(rate_limiter.ray, "is_initialized", lambda: False)
    assert isinstance(rates_for("app"), LocalRates)
    monkeypatch.setattr(rate_limiter.ray, "is_initialized", lambda: True)
    shared = rates_for("app")
    assert isinstance(shared, SharedRates) and shared.name == "request-rates:app"
