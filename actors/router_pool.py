"""Warm tile routers: a large job starts on a router that is already running.

A router actor's start (a new worker process importing Ray Serve, numpy, libvips
and the blend kernels) takes about 2 s on a small machine. The job supervisor
keeps `jobs.warm_routers` routers started and idle; a job takes one (a queue pop)
and a new one starts in its place in the background, `refill_delay_s` later (inside
an event loop): a router's start is a second of CPU that would otherwise compete
with the job that just began on the same cores. Each router still serves one
job and is killed when that job ends, so a job's memory and failures never outlive
it. Routers are named ``router-<hex>`` in the jobs namespace; `job_router` finds
the one working on a job.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import ray

__all__ = ["ROUTER_PREFIX", "RouterPool", "job_router"]

ROUTER_PREFIX = "router-"

StartRouter = Callable[[str], Any]  # a name -> a new router actor with it


def _kill(router: Any) -> None:
    ray.kill(router, no_restart=True)


class RouterPool:
    """`size` started, idle routers; `take` hands one out and starts its replacement."""

    def __init__(
        self,
        start: StartRouter,
        size: int,
        stop: Callable[[Any], None] = _kill,
        refill_delay_s: float = 0.0,
    ):
        self._start = start
        self._stop = stop
        self._size = size
        self._refill_delay_s = refill_delay_s
        self._idle: deque[Any] = deque()
        self._fill()

    def take(self) -> Any:
        """A router for one job: a warm one when there is one, else a new one."""
        router = self._idle.popleft() if self._idle else self._new()
        try:
            asyncio.get_running_loop().call_later(self._refill_delay_s, self._fill)
        except RuntimeError:  # no event loop: refill now
            self._fill()
        return router

    def reset(self, start: StartRouter, size: int) -> None:
        """Start routers with `start` from now on (the config changed): the idle ones go."""
        self.close()
        self._start, self._size = start, size
        self._fill()

    def close(self) -> None:
        """Kill the idle routers."""
        while self._idle:
            self._stop(self._idle.popleft())

    def _fill(self) -> None:
        while len(self._idle) < self._size:
            self._idle.append(self._new())

    def _new(self) -> Any:
        return self._start(f"{ROUTER_PREFIX}{uuid.uuid4().hex[:16]}")


def job_router(job_id: str, namespace: str, timeout_s: float = 10.0) -> Any | None:
    """The router working on `job_id` now, or None (for operators and failure tests)."""
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] != namespace or not actor["name"].startswith(ROUTER_PREFIX):
            continue
        try:
            router = ray.get_actor(actor["name"], namespace=namespace)
            if ray.get(router.job.remote(), timeout=timeout_s) == job_id:
                return router
        except (ValueError, ray.exceptions.RayError, TimeoutError):
            continue  # gone since listed, ended or not answering: not this job's
    return None
