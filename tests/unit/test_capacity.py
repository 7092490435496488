"""Admission that fails fast: a model that has no replica and cannot get one, and `up`'s GPUs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

import serve.capacity as capacity
from core.config_file import load_config, parse_config
from core.deployment_options import gpu_shortfall

CONFIG = """
models:
  quality: {source: "tiny:0", native_resolution: 256}
  big: {source: "tiny:1", native_resolution: 256, gpus_per_replica: 2,
        autoscaling: {min_replicas: 0, max_replicas: 1}}
"""


def _status(**running: int):
    deployments = {
        f"model-{name}": SimpleNamespace(
            replica_states={"RUNNING": count} if count else {},
            status=SimpleNamespace(value="HEALTHY" if count else "UPDATING"),
        )
        for name, count in running.items()
    }
    app = SimpleNamespace(deployments=deployments)
    return SimpleNamespace(applications={"render-cluster": app})


@pytest.fixture
def gpus(monkeypatch):
    """Serve's status and the cluster's GPUs (total, free), as a test sets them."""
    state = {"status": _status(quality=1, big=0), "gpus": (1.0, 0.0)}
    monkeypatch.setattr(capacity.serve, "status", lambda: state["status"])
    monkeypatch.setattr(capacity, "_gpus", lambda: state["gpus"])
    monkeypatch.setattr(capacity.ray, "is_initialized", lambda: True)
    return state


def test_a_model_whose_replica_cannot_be_placed_is_refused_with_why(gpus):
    check = capacity.Capacity(parse_config(CONFIG), cache_s=0)
    assert asyncio.run(check.placement_problem("quality")) is None
    problem = asyncio.run(check.placement_problem("big"))
    assert problem == "no replica runs and each needs 2 GPUs; the cluster has 1"
    gpus["gpus"] = (4.0, 1.0)
    problem = asyncio.run(check.placement_problem("big"))
    assert "each needs 2 GPUs, 1 are free" in problem
    gpus["gpus"] = (4.0, 2.0)
    assert asyncio.run(check.placement_problem("big")) is None  # it can scale up from zero


def test_a_model_whose_replica_is_starting_is_not_refused(gpus):
    """A restarting replica holds its GPU: no GPU is free, yet a replica is on its way."""
    check = capacity.Capacity(parse_config(CONFIG), cache_s=0)
    gpus["gpus"] = (4.0, 0.0)
    starting = _status(quality=0, big=0)
    big = starting.applications["render-cluster"].deployments["model-big"]
    big.replica_states = {"STARTING": 1}
    gpus["status"] = starting
    assert asyncio.run(check.placement_problem("big")) is None
    assert asyncio.run(check.not_ready())["model-quality"].startswith("no replica runs")
    big.status = SimpleNamespace(value="DEPLOY_FAILED")  # a replica that never comes up
    assert "each needs 2 GPUs, 0 are free" in asyncio.run(check.placement_problem("big"))


def test_readiness_names_the_deployments_that_do_not_serve(gpus):
    check = capacity.Capacity(parse_config(CONFIG), cache_s=0)
    assert asyncio.run(check.not_ready()) == {
        "model-big": "no replica runs and each needs 2 GPUs; the cluster has 1"
    }
    gpus["gpus"] = (4.0, 2.0)
    assert asyncio.run(check.not_ready()) == {}  # scales to zero and can be placed
    gpus["status"] = _status(big=0)
    assert asyncio.run(check.not_ready())["model-quality"] == "not deployed"


def test_up_needs_the_gpus_of_every_models_minimum_replicas():
    config = load_config("configs/local.yaml")
    assert gpu_shortfall(config, 4) is None
    message = gpu_shortfall(config, 2)
    assert message.startswith("the models' minimum replicas need 3 GPUs (quality 1, fast 1, ")
    assert "1 short" in message


def test_a_stale_status_admits_at_once_but_refuses_only_when_fresh(gpus, monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr(capacity, "time", SimpleNamespace(monotonic=lambda: clock["now"]))
    reads = []
    monkeypatch.setattr(capacity.serve, "status", lambda: reads.append(1) or gpus["status"])
    check = capacity.Capacity(parse_config(CONFIG), cache_s=2, stale_s=30)

    async def scenario() -> list:
        seen = [await check.placement_problem("quality"), len(reads)]  # no cache: read
        gpus["status"] = _status(quality=0, big=0)  # quality's replica went away
        clock["now"] += 5  # past the cache, within the stale allowance
        seen += [await check.placement_problem("quality"), len(reads)]  # stale: admitted
        await asyncio.sleep(0.2)  # the background read lands
        seen += [await check.placement_problem("quality"), len(reads)]  # fresh: refused
        clock["now"] += 5
        gpus["status"] = _status(quality=1, big=0)  # back again
        seen += [await check.placement_problem("quality"), len(reads)]  # confirmed fresh
        return seen

    answers = asyncio.run(scenario())
    refusal = (
        "no replica runs and none can be placed: each needs 1 GPUs, 0 are free "
        "(other models hold the rest)"
    )
    assert answers[0::2] == [None, None, refusal, None]
    assert answers[1] == 1 and answers[3] in (1, 2) and answers[5] == 2 and answers[7] in (3, 4)
