"""A campaign item rendered through a pipeline: its file carries the item's own record.

`ServeJobRenderer` with a fake stage renderer (no Ray is started): the item's file
is the run's last stage output, tagged with the campaign item's run id (issue 14).
"""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
from PIL import Image

from actors.campaign_runner import ServeJobRenderer
from core.campaign.expand import expand_manifest
from core.campaign.loader import parse_manifest
from core.campaign.plan import pipeline_models
from core.config import StorageConfig
from core.records import new_run_id
from core.store import open_store
from tests.unit.test_image_metadata import parse_a1111
from tests.unit.test_pipeline_runner import CONFIG, FakeRenderer

MANIFEST = """
campaign: posters
defaults: {pipeline: three, sizes: [128x64], seeds: [5]}
items:
  - {id: harbour, prompt: "café «phare» au port"}
"""


def test_a_pipeline_item_s_file_carries_the_item_s_run_id(tmp_path):
    storage = StorageConfig(kind="local", path=tmp_path / "store")
    config = CONFIG.model_copy(update={"storage": storage})
    store = open_store(storage)
    (job,) = expand_manifest(parse_manifest(MANIFEST, "yaml"), config, pipeline_models(config))
    renderer = ServeJobRenderer(config, store)
    renderer.stages = FakeRenderer(store)  # type: ignore[assignment]
    run_id = new_run_id()
    record = asyncio.run(renderer(job, run_id))
    assert (record.id, record.kind, record.pipeline) == (run_id, "campaign-item", "three")
    with Image.open(io.BytesIO(store.get_bytes(record.outputs["image"]))) as image:
        text, pixels = image.text, np.asarray(image)
    assert text["run_id"] == run_id and json.loads(text["rendercluster"])["kind"] == "campaign-item"
    prompt, _, settings = parse_a1111(text["parameters"])
    assert (prompt, settings["Seed"], settings["Size"]) == ("café «phare» au port", "5", "128x64")
    with Image.open(io.BytesIO(store.get_bytes(record.outputs["pipeline_image"]))) as stage:
        assert np.array_equal(np.asarray(stage), pixels)
