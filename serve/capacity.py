"""Whether the cluster can serve a model now: readiness and fail-fast admission.

A model with no running replica whose replica cannot be placed (its GPUs are
not in the cluster, or none is free) gets work refused at once with the reason,
instead of work that waits forever. `/readyz` lists every deployment that is
not running. Serve's status is read off the event loop and cached briefly; with
`stale_s`, a cache past `cache_s` (but not past `cache_s + stale_s`) answers at once
while a read in the background refreshes it, so admission (a job's 202) does not
wait for the controller; a refusal is always confirmed by a fresh read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import ray
from ray import serve

from core.config import APP_NAME, ClusterConfig, deployment_name

__all__ = ["Capacity"]

# Replica states of a replica on its way (placed, starting or restarting): work for the
# model waits in its queue for it instead of being refused.
COMING = ("STARTING", "UPDATING", "RECOVERING")
# Deployment states in which a starting replica is not to be counted on.
FAILING = ("UNHEALTHY", "DEPLOY_FAILED")

logger = logging.getLogger(__name__)


class Capacity:
    """Reads Serve's deployment states (cached for `cache_s`, answered stale for `stale_s`
    more while a background read refreshes them)."""

    def __init__(
        self,
        config: ClusterConfig,
        app_name: str = APP_NAME,
        cache_s: float = 2.0,
        stale_s: float = 0.0,
    ):
        self.config = config
        self.app_name = app_name
        self.cache_s = cache_s
        self.stale_s = stale_s
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._refreshing: asyncio.Task | None = None

    async def deployments(self) -> dict[str, Any]:
        """Deployment name -> Serve's status of it (empty before the app exists)."""
        age = None if self._cached is None else time.monotonic() - self._cached[0]
        if age is None or age > self.cache_s + self.stale_s:
            await self._read()
        elif age > self.cache_s and self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh())
        assert self._cached is not None
        return self._cached[1]

    def _stale(self) -> bool:
        return self._cached is None or time.monotonic() - self._cached[0] > self.cache_s

    @staticmethod
    def runs(deployments: Mapping[str, Any], model_name: str) -> bool:
        """Whether Serve's status (`deployments`) shows a running replica of the model."""
        deployment = deployments.get(deployment_name(model_name))
        return deployment is not None and deployment.replica_states.get("RUNNING", 0) > 0

    @staticmethod
    def _coming(deployments: dict[str, Any], model_name: str) -> bool:
        """Whether a replica of the model is starting (and the deployment is not failing)."""
        deployment = deployments.get(deployment_name(model_name))
        if deployment is None or deployment.status.value in FAILING:
            return False
        return any(deployment.replica_states.get(state, 0) > 0 for state in COMING)

    async def _read(self) -> None:
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(self.app_name)
        self._cached = (time.monotonic(), dict(app.deployments) if app else {})

    async def _refresh(self) -> None:
        try:
            await self._read()
        except Exception:  # the stale answer stands; the next call tries again
            logger.warning("reading Serve's status failed", exc_info=True)
        finally:
            self._refreshing = None

    async def placement_problem(self, model_name: str) -> str | None:
        """Why `model_name` cannot get a replica now, or None if it has or can get one.

        Without Ray, or before the application is deployed, there is nothing to judge.
        """
        if not ray.is_initialized():
            return None
        deployments = await self.deployments()
        if not self.runs(deployments, model_name) and self._stale():
            await self._read()  # refuse only on a fresh reading
            deployments = await self.deployments()
        if not deployments or self.runs(deployments, model_name):
            return None
        if self._coming(deployments, model_name):  # its GPUs are booked already
            return None
        need = self.config.models[model_name].gpus_per_replica
        if need <= 0:
            return None
        total, free = await asyncio.to_thread(_gpus)
        if need > total:
            return f"no replica runs and each needs {need:g} GPUs; the cluster has {total:g}"
        if need > free:
            return (
                f"no replica runs and none can be placed: each needs {need:g} GPUs, "
                f"{free:g} are free (other models hold the rest)"
            )
        return None

    async def not_ready(self) -> dict[str, str]:
        """Deployment name -> why it is not serving (missing, unhealthy, no replica)."""
        deployments = await self.deployments()
        problems = {}
        for model in self.config.models:
            name = deployment_name(model)
            deployment = deployments.get(name)
            if deployment is None:
                problems[name] = "not deployed"
            elif deployment.replica_states.get("RUNNING", 0) == 0:
                problem = await self.placement_problem(model)
                scales_to_zero = self.config.models[model].autoscaling.min_replicas == 0
                if problem is not None or not scales_to_zero:
                    problems[name] = problem or f"no running replica ({deployment.status.value})"
        return problems


def _gpus() -> tuple[float, float]:
    return ray.cluster_resources().get("GPU", 0.0), ray.available_resources().get("GPU", 0.0)
