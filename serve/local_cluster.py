"""Start and stop the embedded local cluster: Ray with logical GPUs plus the Serve app."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import ray
from ray import serve

from actors.job_supervisor import supervisor
from core.config import APP_NAME, ClusterConfig
from core.config_file import missing_local_sources
from core.deployment_options import gpu_shortfall
from core.errors import ConfigError
from serve.app import application
from serve.metrics_endpoint import MetricsEndpoint

SERVE_PROXY_PATIENCE = {
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30",
}
"""Serve's controller kills an HTTP proxy not ready within 5 s (its default), and
`serve.start` then fails with the proxy's ActorDiedError: on a busy 2-core machine a
proxy's start takes longer. The embedded cluster's processes inherit these (an
operator's own values win)."""

SERVE_TRANSPORT = {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}
"""Serve's handle calls (the ingress's and the campaign runner's to the model replicas)
and the proxy's hop to the ingress go over gRPC instead of Ray actor calls, as in
Serve's throughput-optimized mode: a small call's round trip is shorter
(bench_serving.py: the render path and the hops 35 -> 24 ms). A large one is slower
(3 MB by value 12 -> 26 ms), so the tile router keeps actor calls for its tiles
(`actors.tile_router.TILES_BY_REFERENCE`). Every Serve process must carry it: the
embedded cluster's inherit it (an operator's own value wins); the Helm chart sets it
in every pod."""

SERVE_ENV = SERVE_PROXY_PATIENCE | SERVE_TRANSPORT


@dataclass
class LocalCluster:
    """A running embedded cluster and where to reach it."""

    url: str
    startup_s: float
    metrics: MetricsEndpoint | None = None

    def shutdown(self) -> None:
        """Stop Serve, Ray and the metrics endpoint."""
        if self.metrics is not None:
            self.metrics.close()
        serve.shutdown()
        ray.shutdown()


def start_local_cluster(
    config: ClusterConfig,
    gpus: int = 4,
    port: int | None = None,
    cpus: int | None = None,
    metrics_port: int | None = None,
) -> LocalCluster:
    """Start Ray with `gpus` logical GPUs, deploy the app, and wait until it serves.

    `ConfigError` (before anything starts) when the GPUs cannot hold every model's
    minimum replicas, or a model's or adapter's local source is not on this machine.
    The job supervisor is started with the app; it resumes the jobs an earlier run of
    the cluster left in the store. `metrics_port`: serve the application's metrics on
    127.0.0.1:<metrics_port>/metrics.
    """
    shortfall = gpu_shortfall(config, gpus)
    if shortfall is not None:
        raise ConfigError("--gpus", [shortfall])
    missing = missing_local_sources(config)
    if missing:
        raise ConfigError("--config", missing)
    started = time.perf_counter()
    export_port = free_port() if metrics_port is not None else None
    if not ray.is_initialized():
        use_serve_env()
        ray.init(
            _metrics_export_port=export_port,
            address="local",  # always a new embedded cluster, never another one running here
            num_gpus=gpus,
            num_cpus=cpus if cpus is not None else max(8, gpus * 2),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    port = port if port is not None else config.http.port
    serve.start(http_options={"host": config.http.host, "port": port})
    serve.run(application(config), name=APP_NAME, route_prefix="/", blocking=False)
    wait_running()
    ray.get(supervisor().holder.remote(), timeout=120)  # the ingress started it
    metrics = None if export_port is None else MetricsEndpoint(metrics_port, export_port)
    return LocalCluster(
        url=f"http://{config.http.host}:{port}",
        startup_s=time.perf_counter() - started,
        metrics=metrics,
    )


def use_serve_env() -> None:
    """Give the Ray processes started from here `SERVE_ENV` (values already set win)."""
    for name, value in SERVE_ENV.items():
        os.environ.setdefault(name, value)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_running(timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP_NAME)
        if app is not None and app.status == "RUNNING":
            return
        if app is not None and app.status == "DEPLOY_FAILED":
            raise RuntimeError(f"the Serve application failed to deploy: {app.message}")
        time.sleep(0.2)
    raise TimeoutError(f"the Serve application was not running after {timeout_s:.0f}s")
