"""Text boxes through `PipelineRunner` (fake renderer, local store): quiet zone, overlay, gate."""

from __future__ import annotations

import asyncio
import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import CACHE_PREFIX, PipelineRequest, StageJob, StageOutput
from core.config import ClusterConfig, StorageConfig
from core.errors import RequestError
from core.schemas import GenerateRequest, LargeRenderJob
from core.store import ArtifactStore, open_store
from core.typography import TextBox, tesseract_available
from tests.unit.typography.scenes import busy

pytestmark = pytest.mark.skipif(
    not tesseract_available(), reason="tesseract missing (Debian: tesseract-ocr)"
)

SMALL = {"width": 128, "height": 64}
FINAL = {"width": 512, "height": 256}


def _config(**typography) -> ClusterConfig:
    return ClusterConfig.model_validate(
        {
            "models": {"quality": {"source": "tiny:0", "native_resolution": 512}},
            "typography": typography,
            "pipelines": {
                "poster": {
                    "stages": [
                        {"name": "draft", "model": "quality", **SMALL},
                        {
                            "name": "layout",
                            "model": "quality",
                            "consumes": ["previous"],
                            "quiet_zone": "inpaint",
                            **SMALL,
                        },
                        {"name": "final", "model": "quality", "consumes": ["previous"], **FINAL},
                    ]
                },
                "billboard": {
                    "stages": [
                        {"name": "final", "model": "quality", **FINAL},
                        {
                            "name": "hires",
                            "kind": "hires",
                            "model": "quality",
                            "width": 1024,
                            "height": 512,
                            "consumes": ["previous"],
                        },
                    ]
                },
            },
        }
    )


class SceneRenderer:
    """Smooth scenes seeded by the request; records every call."""

    def __init__(self, store: ArtifactStore):
        self.store = store
        self.calls: Counter[tuple[str, str]] = Counter()
        self.requests: list[GenerateRequest | LargeRenderJob] = []

    async def __call__(self, job: StageJob) -> StageOutput:
        request = job.request
        self.requests.append(request)
        if isinstance(request, LargeRenderJob):
            self.calls[(job.stage.name, "hires")] += 1
            scene = busy((request.width, request.height), seed=request.seed % 1000, scale=24)
            png = io.BytesIO()
            Image.fromarray(scene).save(png, format="PNG")
            self.store.put_bytes(request.output_key, png.getvalue())
            return StageOutput(width=request.width, height=request.height)
        self.calls[(job.stage.name, request.mode)] += 1
        scene = busy((request.width, request.height), seed=request.seed % 1000, scale=24)
        if request.mode == "inpaint":  # repaint under the mask only
            scene = np.where(request.mask[..., None] == 255, scene // 2, request.init_image)
        return StageOutput(image=scene.astype(np.uint8))


BOX = TextBox(
    copy="Spring SALE $19.99",
    anchor={"x": 0.08, "y": 0.55, "w": 0.84, "h": 0.3},
    min_cap_height_px=16,
)


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return open_store(StorageConfig(kind="local", path=tmp_path / "store"))


def _request(*boxes: TextBox) -> PipelineRequest:
    return PipelineRequest(prompt="a poster of a lighthouse", seed=11, text_boxes=list(boxes))


def test_text_is_delivered_after_the_last_stage_and_gated_in_its_record(store):
    renderer = SceneRenderer(store)
    runner = PipelineRunner(_config(), store, renderer)
    record = asyncio.run(runner.run("poster", _request(BOX)))
    assert record.status == "done", record.error
    draft, layout, final = runner.stage_records(record.id)
    # every model pass keeps letters out of the boxes; the layout stage inpaints them too
    assert all("text" in s.negative_prompt.split(", ") for s in (draft, layout, final))
    assert renderer.calls[("layout", "inpaint")] == 1 and "quiet_zone" in layout.params
    inpaint = next(r for r in renderer.requests if r.mode == "inpaint")
    assert inpaint.strength == 0.9 and 0 < (inpaint.mask == 255).mean() < 0.6
    # the copy is composited after the final stage and its gate figures are recorded
    assert draft.typography is None and layout.typography is None
    report = final.typography
    assert report["passed"] and report["boxes"][0]["gate"]["ocr_text"] == "Spring SALE $19.99"
    assert {c["name"] for c in report["boxes"][0]["gate"]["checks"]} >= {"fidelity", "ocr"}
    assert final.params["text_boxes"][0]["copy"] == "Spring SALE $19.99"
    assert final.timings["text_s"] > 0
    image = np.asarray(Image.open(io.BytesIO(store.get_bytes(record.outputs["image"]))))
    ink_box = report["boxes"][0]["typeset"]["ink_box"]
    x0, y0, x1, y1 = ink_box
    ink = report["boxes"][0]["treatment"]["ink"]
    rgb = np.array([int(ink[i : i + 2], 16) for i in (1, 3, 5)])
    assert (np.all(image[y0:y1, x0:x1] == rgb, axis=-1)).mean() > 0.05  # the ink is there
    # the same request again comes from the cache, report included
    again = asyncio.run(runner.run("poster", _request(BOX)))
    assert [s.cache for s in runner.stage_records(again.id)] == ["hit", "hit", "hit"]
    assert runner.stage_records(again.id)[2].typography == report
    # other copy: only the last stage is rendered again
    other = TextBox(copy="Spring SALE $29.99", anchor=BOX.anchor, min_cap_height_px=16)
    third = asyncio.run(runner.run("poster", _request(other)))
    assert [s.cache for s in runner.stage_records(third.id)] == ["hit", "hit", "miss"]
    # other gate thresholds: the last stage is gated (so rendered) again
    stricter = PipelineRunner(_config(gate={"min_contrast": 5.0}), store, renderer)
    fourth = asyncio.run(stricter.run("poster", _request(BOX)))
    assert [s.cache for s in stricter.stage_records(fourth.id)] == ["hit", "hit", "miss"]


class PricedRenderer(SceneRenderer):
    """Every call is a hosted one that costs 0.05 USD."""

    async def __call__(self, job: StageJob) -> StageOutput:
        output = await super().__call__(job)
        output.provider = {"provider": "ideogram", "provider_model": "V_2", "cost_usd": 0.05}
        return output


def test_every_hosted_call_of_a_run_is_paid_for_in_its_stages_and_the_run(store):
    runner = PipelineRunner(_config(), store, PricedRenderer(store))
    record = asyncio.run(runner.run("poster", _request(BOX)))
    assert record.status == "done", record.error
    draft, layout, final = runner.stage_records(record.id)
    assert (draft.cost_usd, layout.cost_usd, final.cost_usd) == (0.05, 0.1, 0.05)  # + quiet zone
    assert record.cost_usd == 0.2
    again = asyncio.run(runner.run("poster", _request(BOX)))
    assert again.cost_usd is None  # every stage from the cache: nothing paid


def test_copy_that_cannot_fit_is_refused_before_any_stage(store):
    renderer = SceneRenderer(store)
    runner = PipelineRunner(_config(), store, renderer)
    long = TextBox(copy="word " * 60, anchor={"x": 0.1, "y": 0.1, "w": 0.3, "h": 0.1})
    with pytest.raises(RequestError) as caught:
        runner.start("poster", _request(BOX, long))
    assert caught.value.field == "text_boxes[1].copy"
    assert not renderer.calls and not runner.registry.list()


def test_a_failed_gate_fails_the_stage_naming_the_check_and_keeps_the_image_for_review(store):
    renderer = SceneRenderer(store)
    runner = PipelineRunner(_config(gate={"min_contrast": 21}), store, renderer)
    record = asyncio.run(runner.run("poster", _request(BOX)))
    assert record.status == "failed"
    assert "typography gate failed: text_boxes[0] contrast (" in record.error
    final = runner.stage_records(record.id)[2]
    assert final.status == "failed" and "image" not in final.outputs
    review = Image.open(io.BytesIO(store.get_bytes(final.outputs["review_image"])))
    assert review.text["run_id"] == final.id  # the copy it delivers carries its record
    assert final.typography["passed"] is False
    entries = [store.get_bytes(k).decode() for k in store.list_keys(f"{CACHE_PREFIX}/")]
    assert len(entries) == 2  # draft and layout; the failed final stage is not cached
    assert not any(final.outputs["review_image"] in entry for entry in entries)
    asyncio.run(runner.run("poster", _request(BOX)))  # not cached: the final stage renders again
    assert renderer.calls[("final", "img2img")] == 2


def test_a_hires_last_stage_hands_the_text_to_the_tile_router(store):
    renderer = SceneRenderer(store)
    runner = PipelineRunner(_config(), store, renderer)
    asyncio.run(runner.run("billboard", _request(BOX)))
    hires = next(r for r in renderer.requests if isinstance(r, LargeRenderJob))
    assert hires.text is not None and hires.text.boxes == (BOX,)
    assert "letters" in hires.negative_prompt
