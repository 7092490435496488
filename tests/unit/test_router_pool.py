import asyncio

import ray

from actors.router_pool import ROUTER_PREFIX, RouterPool, job_router


class Starts:
    """A fake router start: records the names it was given, returns them as the routers."""

    def __init__(self, tag: str = "a"):
        self.tag = tag
        self.names: list[str] = []

    def __call__(self, name: str) -> str:
        self.names.append(name)
        return f"{self.tag}:{name}"


def test_the_pool_starts_its_routers_ahead_and_replaces_each_one_taken():
    starts, stopped = Starts(), []
    pool = RouterPool(starts, 2, stopped.append)
    assert len(starts.names) == 2 and all(n.startswith(ROUTER_PREFIX) for n in starts.names)
    first = pool.take()
    assert first == f"a:{starts.names[0]}"  # started before the job came
    assert len(starts.names) == 3  # its replacement starts at once
    assert pool.take() == f"a:{starts.names[1]}"
    assert len(set(starts.names)) == 4 and not stopped


def test_without_warm_routers_each_job_starts_its_own():
    starts = Starts()
    pool = RouterPool(starts, 0, lambda router: None)
    assert starts.names == []
    router = pool.take()
    assert router == f"a:{starts.names[0]}" and len(starts.names) == 1


def test_a_new_config_replaces_the_idle_routers():
    old, new, stopped = Starts("old"), Starts("new"), []
    pool = RouterPool(old, 2, stopped.append)
    pool.reset(new, 1)
    assert stopped == [f"old:{name}" for name in old.names]
    assert pool.take() == f"new:{new.names[0]}"
    pool.close()
    assert stopped[-1] == f"new:{new.names[1]}"


def test_in_an_event_loop_a_taken_router_is_replaced_after_the_refill_delay():
    async def scenario() -> tuple[int, int]:
        starts = Starts()
        pool = RouterPool(starts, 1, lambda router: None, refill_delay_s=0.05)
        assert pool.take() == f"a:{starts.names[0]}"
        right_after = len(starts.names)  # not yet: the job's router starts its work first
        await asyncio.sleep(0.3)
        return right_after, len(starts.names)

    assert asyncio.run(scenario()) == (1, 2)


class FakeRouter:
    def __init__(self, job: str):
        self.job = type("Method", (), {"remote": staticmethod(lambda: job)})


def test_finding_a_jobs_router_skips_one_that_died_after_it_was_listed(monkeypatch):
    listed = [
        {"name": f"{ROUTER_PREFIX}gone", "namespace": "jobs"},
        {"name": f"{ROUTER_PREFIX}other", "namespace": "elsewhere"},
        {"name": f"{ROUTER_PREFIX}working", "namespace": "jobs"},
    ]
    alive = {f"{ROUTER_PREFIX}working": FakeRouter("job-1")}

    def get_actor(name: str, namespace: str):
        if name not in alive:
            raise ValueError(f"Failed to look up actor with name '{name}'")
        return alive[name]

    monkeypatch.setattr(ray.util, "list_named_actors", lambda all_namespaces: listed)
    monkeypatch.setattr(ray, "get_actor", get_actor)
    monkeypatch.setattr(ray, "get", lambda ref, timeout: ref)
    assert job_router("job-1", "jobs") is alive[f"{ROUTER_PREFIX}working"]
    assert job_router("job-2", "jobs") is None


def test_each_pool_router_opens_the_configs_model_handles_as_it_starts(monkeypatch):
    from actors import job_work
    from core.config_file import load_config

    config = load_config("configs/local.yaml")
    prepared: list[list[str]] = []

    class Router:
        class prepare:  # noqa: N801 - an actor method's shape: `router.prepare.remote(...)`
            @staticmethod
            def remote(models: list[str]) -> None:
                prepared.append(models)

    monkeypatch.setattr(job_work.ModelCalls, "start_router", lambda self, name, ns: Router())
    pool = job_work.router_pool(config, "app")
    assert prepared == [list(config.models)] * config.jobs.warm_routers
    pool.take()  # outside an event loop: the replacement starts at once
    assert len(prepared) == config.jobs.warm_routers + 1
