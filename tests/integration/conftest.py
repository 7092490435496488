"""One real Ray (8 logical GPUs) and one Serve instance shared by every integration test.

The app's minimum replicas take 3 logical GPUs; the rest let a model run at 4 fixed
replicas beside the others, or a second app's model start while `quality` is scaled
out, without waiting for a GPU."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from core.config import ClusterConfig
from core.config_file import load_config

WEBHOOK_SECRET = "integration-webhook-secret"


@dataclass
class RunningCluster:
    """The shared cluster: its HTTP URL and the config it was started from."""

    url: str
    config: ClusterConfig
    metrics_url: str = ""  # the rendercluster_* metrics (`up --metrics-port`)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    from serve.local_cluster import start_local_cluster

    base = load_config("configs/local.yaml")
    storage = base.storage.model_copy(update={"path": tmp_path_factory.mktemp("store")})
    config = base.model_copy(
        update={"model_cache_dir": tmp_path_factory.mktemp("models"), "storage": storage}
    )
    # Ray's worker processes (the job supervisor among them) inherit this environment.
    os.environ.setdefault(config.jobs.webhook_secret_env, WEBHOOK_SECRET)
    running = start_local_cluster(config, gpus=8, port=free_port(), cpus=8, metrics_port=0)
    yield RunningCluster(running.url, config, running.metrics.url)
    running.shutdown()
