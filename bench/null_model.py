"""A null model server for the router benchmarks, and the Ray and Serve helpers they share.

`NullModel` answers `render(GenerateRequest)` like `serve.model_server.ModelServer`
but computes nothing: it holds its replica's "GPU" (one tile at a time) for a
fixed time, then returns the request's init image, or a flat image of the
requested size whose level comes from the seed. Deployed under
`deployment_name(model_name)`, the `TileRouter` finds it like any real model.

It answers a fused render's calls too: `encode_prompt` (zero embeddings of
SDXL's shape and a DDIM scheduler), `denoise` (holds the "GPU" `sleep_s` per crop
and predicts zeros; it fetches the job's conditioning from the object store
once, as `ModelServer` does), `decode` (a flat tile, no wait) and
`encode_image`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import numpy as np
import ray
from ray import serve
from ray.serve.config import ProxyLocation

from core.config import deployment_name
from core.deployment_options import request_routing
from core.largeformat.fused_schemas import (
    Conditioning,
    DecodeRequest,
    DenoiseRequest,
    DenoiseResult,
    EncodeRequest,
    EncodeResult,
    FusedSetup,
    PromptRequest,
    SchedulerSpec,
)
from core.schemas import GenerateRequest, GenerateResult
from serve.local_cluster import use_serve_env

__all__ = ["NullModel", "deploy_null_model", "free_port", "start_ray", "wait_replicas"]

NULL_SCHEDULER = SchedulerSpec(
    "DDIMScheduler",
    {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
    },
)


@serve.deployment
class NullModel:
    """Sleeps `sleep_s` per request, one request at a time per replica."""

    def __init__(self, sleep_s: float):
        self.sleep_s = sleep_s
        self._gpu = asyncio.Lock()
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
        self.conditionings: dict[str, Conditioning] = {}
        self.fetches = 0

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

    async def encode_prompt(self, request: PromptRequest) -> FusedSetup:
        """Zero conditioning of SDXL's shapes (77 tokens x 2048, pooled 1280, size ids)."""
        rows = 2 if request.guidance > 1 else 1
        conditioning = Conditioning(
            f"null-{request.prompt}-{rows}",
            np.zeros((rows, 77, 2048), np.float32),
            np.zeros((rows, 1280), np.float32),
            np.zeros((rows, 6), np.float32),
        )
        return FusedSetup(conditioning, NULL_SCHEDULER, 4, 8, "float16", self.replica)

    async def denoise(self, request: DenoiseRequest) -> DenoiseResult:
        """Zeros for each crop after `sleep_s` per crop (the conditioning fetched once)."""
        if request.key not in self.conditionings:
            conditioning = request.conditioning
            if isinstance(conditioning, ray.ObjectRef):
                conditioning = await conditioning
            self.conditionings[request.key] = conditioning
            self.fetches += 1
        async with self._gpu:
            started_at = time.time()
            started = time.perf_counter()
            await asyncio.sleep(self.sleep_s * len(request.latents))
            noise = np.zeros_like(request.latents)
            return DenoiseResult(noise, self.replica, started_at, time.perf_counter() - started)

    async def decode(self, request: DecodeRequest) -> GenerateResult:
        """A flat tile of the crop's pixel size, at once."""
        _, h, w = request.latents.shape
        image = np.full((h * 8, w * 8, 3), 128, np.uint8)
        return GenerateResult(image, 0, 0.0, 1, self.replica, self.gpu_ids, time.time())

    async def encode_image(self, request: EncodeRequest) -> EncodeResult:
        """Zero latents of the tile's latent size, at once."""
        h, w = request.image.shape[0] // 8, request.image.shape[1] // 8
        return EncodeResult(np.zeros((4, h, w), np.float32), self.replica, time.time())

    async def info(self) -> dict[str, Any]:
        """Which replica answers (as a model server's `info`; pool routers call it)."""
        return {"replica": self.replica, "gpu_ids": self.gpu_ids}

    async def echo(self, pixels: np.ndarray) -> np.ndarray:
        """Return the array passed by value (it travels inside the call, both ways)."""
        return pixels

    async def echo_ref(self, refs: list[ray.ObjectRef]) -> np.ndarray:
        """Return the array behind `refs[0]` (fetched here from the object store)."""
        return await refs[0]


def start_ray(gpus: int, cpus: int = 2) -> None:
    """Start a private Ray instance with `gpus` logical GPUs and Serve with no HTTP proxy
    (its processes get the service's Serve settings, `SERVE_ENV`)."""
    use_serve_env()
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
        request_router_config=request_routing(),
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
