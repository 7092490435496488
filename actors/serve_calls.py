"""Calls to model deployments through Serve handles, and the one place that maps
Serve's and Ray's failures onto the project's errors.

- `BackPressureError` (the model's queue is full) -> `OverloadedError`;
- a replica that died or cannot be reached -> `ReplicaUnavailable`;
- an error the model raised -> that error itself (`TileOutOfMemory`,
  `RequestError`, ...), never Ray's wrapper around it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError

from core.config import deployment_name
from core.errors import OverloadedError, ReplicaUnavailable
from core.largeformat.fanout import ModelCall

__all__ = [
    "ServeModelCalls",
    "call_method",
    "deployment_call",
    "running_replicas",
    "running_replicas_of",
]


async def call_method(method: Any, request: Any, model_name: str) -> Any:
    """`await method.remote(request)` on a deployment handle, failures mapped (see module)."""
    try:
        return await method.remote(request)
    except BackPressureError:
        raise OverloadedError(model_name, retry_after_s=1) from None
    except (RayActorError, ActorUnavailableError) as exc:
        raise ReplicaUnavailable(model_name, type(exc).__name__) from None
    except RayTaskError as exc:
        raise exc.cause from None


def deployment_call(handle: Any, model_name: str, method: str) -> ModelCall:
    """A `ModelCall` to `method` of the model's deployment through `handle` (its caller's
    handle: one already in use has found its replicas, and it carries the caller's
    transport, e.g. `actors.tile_router.tile_handle`)."""
    bound = getattr(handle, method)

    async def call(request: Any) -> Any:
        return await call_method(bound, request, model_name)

    return call


def running_replicas(app_name: str, model_name: str) -> int:
    """How many replicas of the model's deployment in `app_name` are running now (0: none)."""
    return running_replicas_of(app_name, [model_name])[model_name]


def running_replicas_of(app_name: str, model_names: Iterable[str]) -> dict[str, int]:
    """`running_replicas` of each model, from one read of Serve's status."""
    app = serve.status().applications.get(app_name)
    deployments = {} if app is None else app.deployments
    counts = {}
    for name in model_names:
        deployment = deployments.get(deployment_name(name))
        counts[name] = 0 if deployment is None else deployment.replica_states.get("RUNNING", 0)
    return counts


class ServeModelCalls:
    """Renders on model deployments looked up by name, counting the calls in flight."""

    def __init__(self, app_name: str, handles: dict[str, Any] | None = None):
        """`handles` (model name -> deployment handle) wins over looking handles up by name."""
        self.app_name = app_name
        self._handles = dict(handles or {})
        self.in_flight: Counter[str] = Counter()

    def handle(self, model_name: str) -> Any:
        if model_name not in self._handles:
            self._handles[model_name] = serve.get_deployment_handle(
                deployment_name(model_name), self.app_name
            )
        return self._handles[model_name]

    async def render(self, model_name: str, request: Any) -> Any:
        """One render on a replica of `model_name` (failures mapped, see the module)."""
        self.in_flight[model_name] += 1
        try:
            return await call_method(self.handle(model_name).render, request, model_name)
        finally:
            self.in_flight[model_name] -= 1
