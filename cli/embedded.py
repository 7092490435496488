"""Reach a running cluster by URL, or start an embedded one for the length of a command."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from core.config_file import load_config


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def cluster_url(url: str | None, config: Path, gpus: int) -> Iterator[str]:
    """`url` itself, or the URL of an embedded cluster started from `config` (then stopped)."""
    if url is not None:
        yield url
        return
    from serve.local_cluster import start_local_cluster

    cluster = start_local_cluster(load_config(config), gpus=gpus, port=free_port())
    try:
        yield cluster.url
    finally:
        with redirect_stdout(sys.stderr):  # Ray's parting log lines: stdout keeps only --json
            cluster.shutdown()
