"""Send a validated render to its model's replicas, counting what is in flight.

Serve's backpressure (`BackPressureError`, raised when the model's queue is
full) becomes `OverloadedError`, which the ingress turns into 503.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from core.errors import OverloadedError, RequestError
from core.schemas import GenerateRequest, GenerateResult


class Dispatcher:
    """Routes `GenerateRequest`s to model deployments by model name."""

    def __init__(self, handles: dict[str, DeploymentHandle]):
        self._handles = handles
        self.in_flight: Counter[str] = Counter()

    def handle(self, model_name: str) -> DeploymentHandle:
        try:
            return self._handles[model_name]
        except KeyError:
            raise RequestError("model", f"model {model_name!r} is not served here") from None

    async def render(self, model_name: str, request: GenerateRequest) -> GenerateResult:
        """Render on one replica of `model_name`; raise `OverloadedError` when its queue is full."""
        handle = self.handle(model_name)
        self.in_flight[model_name] += 1
        try:
            return await handle.render.remote(request)
        except BackPressureError:
            raise OverloadedError(model_name, retry_after_s=1) from None
        finally:
            self.in_flight[model_name] -= 1

    async def replica_info(self, model_name: str) -> dict[str, Any]:
        """`ModelServer.info()` of whichever replica answers."""
        return await self.handle(model_name).info.remote()
