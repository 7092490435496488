"""A tile router waiting in the jobs' warm pool opens its models' Serve handles."""

from __future__ import annotations

import ray

from actors.tile_router import TileRouter
from core.config import APP_NAME


def test_prepare_opens_the_handles_of_the_models_that_run_and_skips_the_others(cluster, tmp_path):
    storage = cluster.config.storage.model_dump(mode="json")
    router = TileRouter.remote(APP_NAME, storage, str(tmp_path))
    try:
        models = [*cluster.config.models, "not-deployed"]
        ready = ray.get(router.prepare.remote(models), timeout=180)
        assert ray.get(router.job.remote(), timeout=30) is None  # still free for a job
    finally:
        ray.kill(router, no_restart=True)
    assert ready == list(cluster.config.models)
