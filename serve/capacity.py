"""Whether the cluster can serve a model now: readiness and fail-fast admission.

A model with no running replica whose replica cannot be placed (its GPUs are
not in the cluster, or none is free) gets work refused at once with the reason,
instead of work that waits forever. `/readyz` lists every deployment that is
not running. Serve's status is read off the event loop and cached briefly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray
from ray import serve

from core.config import APP_NAME, ClusterConfig, deployment_name

__all__ = ["Capacity"]


class Capacity:
    """Reads Serve's deployment states (cached for `cache_s`)."""

    def __init__(self, config: ClusterConfig, app_name: str = APP_NAME, cache_s: float = 2.0):
        self.config = config
        self.app_name = app_name
        self.cache_s = cache_s
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def deployments(self) -> dict[str, Any]:
        """Deployment name -> Serve's status of it (empty before the app exists)."""
        if self._cached is None or time.monotonic() - self._cached[0] > self.cache_s:
            status = await asyncio.to_thread(serve.status)
            app = status.applications.get(self.app_name)
            self._cached = (time.monotonic(), dict(app.deployments) if app else {})
        return self._cached[1]

    async def placement_problem(self, model_name: str) -> str | None:
        """Why `model_name` cannot get a replica now, or None if it has or can get one.

        Without Ray, or before the application is deployed, there is nothing to judge.
        """
        if not ray.is_initialized():
            return None
        deployments = await self.deployments()
        if not deployments:
            return None
        deployment = deployments.get(deployment_name(model_name))
        if deployment is not None and deployment.replica_states.get("RUNNING", 0) > 0:
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
