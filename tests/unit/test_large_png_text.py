"""A large-format PNG's text reads back as written, non-ASCII prompt included (issue 14).

libvips writes PNG text as Latin-1 tEXt; `RenderCalls.finish_large` re-tags the
finished file as UTF-8 iTXt when its text needs it. No Ray is started: the tile
router is a fake that writes the file the way the streaming writer does.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import pyvips

from actors.render_calls import RenderCalls
from core.config import ClusterConfig
from core.image_tags import vips_with_metadata
from core.records import RunRegistry
from core.schemas import LargeRenderJob, LargeRenderResult, RenderRequestBody
from core.store import LocalStore
from tests.unit.test_image_metadata import parse_a1111, read_metadata

CONFIG = ClusterConfig.model_validate(
    {"models": {"tiny": {"source": "tiny:0", "native_resolution": 64}}}
)


class FakeRouter:
    """`ModelCalls.run_large` of a router that writes a flat PNG with libvips's tags."""

    def __init__(self, store: LocalStore):
        self.store = store

    async def run_large(self, job: LargeRenderJob, router=None) -> LargeRenderResult:
        assert job.metadata is not None
        flat = np.full((job.height, job.width, 3), 90, np.uint8)
        image = pyvips.Image.new_from_array(flat).copy(interpretation="srgb")
        data = vips_with_metadata(image, "png", job.metadata).write_to_buffer(".png")
        self.store.put_bytes(job.output_key, data)
        return LargeRenderResult(
            job_id=job.job_id,
            output_key=job.output_key,
            output_bytes=len(data),
            width=job.width,
            height=job.height,
            format="png",
            tiles=2,
            redundancy=1.0,
            seam_score=0.0,
            replicas_used=["r0"],
            max_concurrent_replicas=1,
            retries=0,
            splits=0,
            base_size=None,
            timings={},
        )


@pytest.mark.parametrize("prompt", ["a red kite", "café «cerf-volant» — 凧"])
def test_a_large_png_reads_back_its_prompt(tmp_path, prompt):
    store = LocalStore(tmp_path / "store")
    calls = RenderCalls(CONFIG, RunRegistry(store), FakeRouter(store))  # type: ignore[arg-type]
    body = RenderRequestBody(prompt=prompt, seed=3, steps=4, width=256, height=128)
    job, record = calls.large_job(body, "20260101-000000-000000-abcdef01")
    done = asyncio.run(calls.finish_large(record, job))
    found = read_metadata(store.get_bytes(done.outputs["image"]))
    assert found["run_id"] == done.id
    assert parse_a1111(found["parameters"])[0] == prompt
