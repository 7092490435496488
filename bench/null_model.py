"""A null model server for the router benchmarks, and the Ray and Serve helpers they share.

`NullModel` answers `render(GenerateRequest)` like `serve.model_server.ModelServer`
but computes nothing: it holds its replica's "GPU" (one tile at a time) for a
fixed time, then returns the request's init image, or a flat image of the
requested size whose level comes from the seed. Deployed under
`deployment_name(model_name)`, the `TileRouter` finds it like any real model.
"""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import ray
from ray import serve
from ray.serve.config import ProxyLocation

from core.config import deployment_name
from core.schemas import GenerateRequest, GenerateResult

__all__ = ["NullModel", "deploy_null_model", "free_port", "start_ray", "wait_replicas"]


@serve.deployment
class NullModel:
    """Sleeps `sleep_s` per request, one request at a time per replica."""

    def __init__(self, sleep_s: float):
        self.sleep_s = sleep_s
        self._gpu = asyncio.Lock()
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]

    async def render(self, request: GenerateRequest) -> GenerateResult:
        """Return the init image (or a flat image of the request's size) after `sleep_s`."""
        async with self._gpu:
            started_at = time.time()
            started = time.perf_counter()
            await asyncio.sleep(self.sleep_s)
            if request.init_image is not None:
                image = request.init_image
            else:
                image = np.full((request.height, request.width, 3), request.seed % 256, np.uint8)
            return GenerateResult(
                image=image,
                seed=request.seed,
                compute_s=time.perf_counter() - started,
                batch_size=1,
                replica=self.replica,
                gpu_ids=self.gpu_ids,
                started_at=started_at,
            )

    async def echo(self, pixels: np.ndarray) -> np.ndarray:
        """Return the array passed by value (it travels inside the call, both ways)."""
        return pixels

    async def echo_ref(self, refs: list[ray.ObjectRef]) -> np.ndarray:
        """Return the array behind `refs[0]` (fetched here from the object store)."""
        return await refs[0]


def start_ray(gpus: int, cpus: int = 2) -> None:
    """Start a private Ray instance with `gpus` logical GPUs and Serve with no HTTP proxy."""
    ray.init(
        num_cpus=cpus,
        num_gpus=gpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    serve.start(proxy_location=ProxyLocation.Disabled)


def deploy_null_model(
    app_name: str, model_name: str, replicas: int, sleep_s: float, max_ongoing_requests: int
) -> None:
    """Deploy `replicas` null replicas (1 logical GPU each) and wait until all run."""
    deployment = NullModel.options(
        name=deployment_name(model_name),
        num_replicas=replicas,
        max_ongoing_requests=max_ongoing_requests,
        ray_actor_options={"num_gpus": 1, "num_cpus": 0.01},
    )
    serve.run(deployment.bind(sleep_s), name=app_name, route_prefix=None, blocking=False)
    wait_replicas(app_name, model_name, replicas)


def wait_replicas(app_name: str, model_name: str, replicas: int, timeout_s: float = 300) -> None:
    """Wait until the model's deployment in `app_name` runs exactly `replicas` replicas."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        if app is not None and app.status == "RUNNING":
            states = app.deployments[deployment_name(model_name)].replica_states
            if states == {"RUNNING": replicas}:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{app_name}: {replicas} replicas of {model_name} not running in time")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
