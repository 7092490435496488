"""The standard pipeline's first three stages through Serve, and a re-run of its final stage."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
from PIL import Image

from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import PipelineRequest
from actors.stage_delivery import STAGE_IMAGE
from actors.stage_renderers import ServeStageRenderer
from core.config import APP_NAME, StorageConfig
from core.pipelines import PipelineConfig
from core.store import ArtifactStore, open_store


def test_standard_draft_layout_final_then_a_final_rerun_reuses_draft_and_layout(cluster, tmp_path):
    standard = cluster.config.pipelines["standard"]
    first_three = PipelineConfig(stages=standard.stages[:3])
    assert [s.name for s in first_three.stages] == ["draft", "layout", "final"]
    config = cluster.config.model_copy(update={"pipelines": {"first-three": first_three}})
    storage = StorageConfig(kind="local", path=tmp_path / "store")
    store = open_store(storage)
    runner = PipelineRunner(config, store, ServeStageRenderer(storage, APP_NAME))
    request = PipelineRequest(prompt="a poster of a lighthouse", seed=11)

    async def scenario():
        started = time.perf_counter()
        waiting = await runner.run("first-three", request)
        full_s = time.perf_counter() - started
        assert waiting.status == "awaiting_approval"  # the final stage asks for approval
        done = await runner.approve(waiting.id)
        started = time.perf_counter()
        changed = await runner.rerun(done.id, "final", {"steps": 3})
        rerun_s = time.perf_counter() - started
        same = await runner.rerun(done.id, "final")
        return done, changed, same, full_s, rerun_s

    done, changed, same, full_s, rerun_s = asyncio.run(scenario())
    print(f"\nfull 3-stage run {full_s:.2f}s, re-run of final {rerun_s:.2f}s")
    assert done.status == "done"
    first = runner.stage_records(done.id)
    assert [(s.stage, s.model, s.cache) for s in first] == [
        ("draft", "fast", "miss"),
        ("layout", "quality", "miss"),
        ("final", "quality", "miss"),
    ]
    for record in first:
        stage = first_three.stages[first_three.index(record.stage)]
        assert pixels(store, record.outputs["image"]).shape == (stage.height, stage.width, 3)
        assert pixels(store, record.outputs["image"]).std() > 1
    for rerun in (changed, same):
        assert rerun.status == "awaiting_approval" and rerun.parent_id == done.id
        stages = runner.stage_records(rerun.id)
        assert [s.cache for s in stages] == ["hit", "hit", "miss"]
        for hit, original in zip(stages[:2], first[:2], strict=True):
            assert hit.outputs[STAGE_IMAGE] == original.outputs[STAGE_IMAGE]  # the cache's file
            assert same_pixels(store, hit.outputs["image"], original.outputs["image"])
        for stage in stages:  # each delivered file leads to its own stage run's record
            with Image.open(io.BytesIO(store.get_bytes(stage.outputs["image"]))) as image:
                assert image.text["run_id"] == stage.id and "Steps: " in image.text["parameters"]
    assert runner.stage_records(changed.id)[2].params["steps"] == 3
    assert not same_pixels(store, changed.outputs["final"], done.outputs["final"])
    # the real renderer is deterministic: the same stored bytes and pixels
    again, original = runner.stage_records(same.id)[2], first[2]
    assert store.get_bytes(again.outputs[STAGE_IMAGE]) == store.get_bytes(
        original.outputs[STAGE_IMAGE]
    )
    assert same_pixels(store, same.outputs["final"], done.outputs["final"])


def pixels(store: ArtifactStore, key: str) -> np.ndarray:
    with Image.open(io.BytesIO(store.get_bytes(key))) as image:
        return np.asarray(image)


def same_pixels(store: ArtifactStore, a: str, b: str) -> bool:
    return np.array_equal(pixels(store, a), pixels(store, b))
