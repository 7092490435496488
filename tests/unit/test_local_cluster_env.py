"""The Serve settings the embedded cluster's Ray processes start with (no Ray started)."""

from __future__ import annotations

import os

import pytest

from core.config_file import load_config
from serve import local_cluster
from serve.local_cluster import SERVE_ENV, start_local_cluster


class RayInitCalled(Exception):
    """Raised by the stand-in `ray.init`, with the environment the processes would inherit."""

    def __init__(self, environ: dict[str, str]):
        super().__init__("ray.init")
        self.environ = environ


def environment_at_ray_init(monkeypatch, **preset: str) -> dict[str, str]:
    """The environment `ray.init` would pass on, starting from this one without `SERVE_ENV`
    plus `preset` (a copy: the test process's own is left as it was)."""
    environ = {k: v for k, v in os.environ.items() if k not in SERVE_ENV} | preset
    monkeypatch.setattr(os, "environ", environ)

    def init(**_: object) -> None:
        raise RayInitCalled(dict(os.environ))

    monkeypatch.setattr(local_cluster.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(local_cluster.ray, "init", init)
    with pytest.raises(RayInitCalled) as called:
        start_local_cluster(load_config("configs/local.yaml"), gpus=4)
    return called.value.environ


def test_ray_starts_with_grpc_handle_calls_and_a_patient_proxy(monkeypatch):
    environ = environment_at_ray_init(monkeypatch)
    assert environ["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "1"
    assert {name: environ[name] for name in SERVE_ENV} == SERVE_ENV


def test_an_operators_own_setting_wins(monkeypatch):
    environ = environment_at_ray_init(monkeypatch, RAY_SERVE_USE_GRPC_BY_DEFAULT="0")
    assert environ["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "0"
