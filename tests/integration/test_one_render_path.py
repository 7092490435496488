"""The same request through the API, a pipeline stage and a campaign item: same bytes, same record.

Before `actors.render_calls` each caller wrote its own copy of the render call and
the copies drifted; this test would have caught them.
"""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
from PIL import Image

from actors.campaign_runner import ServeJobRenderer
from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import PipelineRequest
from actors.stage_renderers import ServeStageRenderer
from core.campaign import expand_manifest, parse_manifest
from core.campaign.plan import pipeline_models
from core.config import APP_NAME, StorageConfig
from core.pipelines import PipelineConfig
from core.records import new_run_id
from core.store import open_store

PROMPT = "a lighthouse on a cliff at dusk"
SEED, STEPS, GUIDANCE, SIZE = 31, 3, 4.0, (256, 192)
SHARED_FIELDS = ("model", "model_source", "model_revision", "family", "prompt", "seed")
SHARED_PARAMS = ("mode", "width", "height", "steps", "guidance")


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _fields(record) -> dict:
    fields = {name: getattr(record, name) for name in SHARED_FIELDS}
    return fields | {name: record.params[name] for name in SHARED_PARAMS}


def _via_api(cluster) -> tuple[np.ndarray, dict]:
    body = {
        "prompt": PROMPT,
        "model": "quality",
        "width": SIZE[0],
        "height": SIZE[1],
        "seed": SEED,
        "steps": STEPS,
        "guidance": GUIDANCE,
    }
    with cluster.client() as http:
        answer = http.post("/v1/renders", json=body)
        assert answer.status_code == 200, answer.text
        view = answer.json()
        record = http.get(f"/v1/runs/{view['id']}").json()
    fields = {name: record[name] for name in SHARED_FIELDS}
    fields |= {name: record["params"][name] for name in SHARED_PARAMS}
    return _pixels(base64.b64decode(view["image_base64"])), fields


def _via_pipeline(cluster, storage) -> tuple[np.ndarray, dict]:
    stage = {
        "name": "final",
        "model": "quality",
        "width": SIZE[0],
        "height": SIZE[1],
        "steps": STEPS,
        "guidance": GUIDANCE,
    }
    pipeline = PipelineConfig.model_validate({"stages": [stage]})
    config = cluster.config.model_copy(update={"pipelines": {"one": pipeline}})
    store = open_store(storage)
    runner = PipelineRunner(config, store, ServeStageRenderer(storage, APP_NAME))
    run = asyncio.run(runner.run("one", PipelineRequest(prompt=PROMPT, seed=SEED)))
    assert run.status == "done", run.error
    record = runner.stage_records(run.id)[-1]
    return _pixels(store.get_bytes(record.outputs["image"])), _fields(record)


def _via_campaign(cluster, storage) -> tuple[np.ndarray, dict]:
    manifest = parse_manifest(
        "campaign: one-path\n"
        f"defaults: {{model: quality, sizes: [{SIZE[0]}x{SIZE[1]}], steps: {STEPS}, "
        f"guidance: {GUIDANCE}, seeds: [{SEED}]}}\n"
        f"items:\n  - {{id: lighthouse, prompt: {PROMPT}}}\n",
        "yaml",
    )
    config = cluster.config.model_copy(update={"storage": storage})
    (job,) = expand_manifest(manifest, config, pipeline_models(config))
    store = open_store(storage)
    renderer = ServeJobRenderer(config, store, APP_NAME)
    record = asyncio.run(renderer(job, new_run_id()))
    assert record.kind == "campaign-item" and record.campaign == "one-path"
    assert record.params["item_id"] == "lighthouse"
    return _pixels(store.get_bytes(record.outputs["image"])), _fields(record)


def test_api_pipeline_stage_and_campaign_item_render_alike(cluster, tmp_path):
    storage = StorageConfig(kind="local", path=tmp_path / "store")
    api_pixels, api_fields = _via_api(cluster)
    stage_pixels, stage_fields = _via_pipeline(cluster, storage)
    item_pixels, item_fields = _via_campaign(cluster, storage)
    assert api_pixels.shape == (SIZE[1], SIZE[0], 3) and api_pixels.std() > 1
    assert np.array_equal(api_pixels, stage_pixels)
    assert np.array_equal(api_pixels, item_pixels)
    assert api_fields["mode"] == "txt2img" and api_fields["seed"] == SEED
    assert api_fields == stage_fields == item_fields


def test_a_campaign_item_with_integrated_copy_gets_the_integrated_pass(cluster, tmp_path):
    storage = StorageConfig(kind="local", path=tmp_path / "store")
    manifest = parse_manifest(
        "campaign: integrated-copy\n"
        "defaults: {model: quality, sizes: [256x256], steps: 4, seeds: [5], "
        "copy_mode: integrated}\n"
        "items:\n  - {id: sale, prompt: a quiet beach, copy: SALE}\n",
        "yaml",
    )
    config = cluster.config.model_copy(update={"storage": storage})
    (job,) = expand_manifest(manifest, config, pipeline_models(config))
    renderer = ServeJobRenderer(config, open_store(storage), APP_NAME)
    try:
        record = asyncio.run(renderer(job, new_run_id()))
        report = record.typography
    except Exception as exc:  # a failed gate keeps the report for review
        report = exc.report
    (box,) = report["boxes"]
    assert box["mode"] == "integrated"
    assert box["integrated_gate"] is not None  # the masked pass ran on the model
