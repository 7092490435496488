"""`PipelineRunner` with a fake deterministic renderer (no Ray) over both store backends."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import uuid
from collections import Counter
from collections.abc import Callable

import boto3
import numpy as np
import pytest
from botocore.config import Config
from PIL import Image

from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import CACHE_PREFIX, PipelineRequest, StageJob, StageOutput
from actors.stage_delivery import STAGE_IMAGE
from core.config import ClusterConfig
from core.errors import JobFailed, NotFoundError, RequestError, StorageError
from core.imaging import encode_image
from core.records import RunRecord
from core.schemas import LargeRenderJob
from core.store import ArtifactStore, S3Store
from tests.unit.conftest import BUCKET, MotoServer
from tests.unit.test_image_metadata import parse_a1111

RENDER = {"width": 64, "height": 32}
CONFIG = ClusterConfig.model_validate(
    {
        "models": {
            "quality": {"source": "tiny:0", "default_steps": 4, "native_resolution": 64},
            "fast": {"source": "tiny:1", "default_steps": 2, "native_resolution": 64},
        },
        "styles": {"draft": "fast", "photoreal": "quality"},
        "pipelines": {
            "three": {
                "stages": [
                    {"name": "draft", "style": "draft", **RENDER},
                    {"name": "layout", "model": "quality", "consumes": ["previous"], **RENDER},
                    {
                        "name": "final",
                        "style": "photoreal",
                        "width": 128,
                        "height": 64,
                        "consumes": ["previous"],
                    },
                ]
            },
            "gated": {
                "stages": [
                    {"name": "draft", "style": "draft", **RENDER},
                    {"name": "layout", "style": "draft", "approval": "required", **RENDER},
                    {"name": "final", "style": "photoreal", "consumes": ["previous"], **RENDER},
                ]
            },
            "masked": {
                "stages": [
                    {"name": "fix", "style": "draft", "consumes": ["reference", "mask"], **RENDER}
                ]
            },
            "large": {
                "stages": [
                    {"name": "final", "style": "photoreal", **RENDER},
                    {
                        "name": "hires",
                        "kind": "hires",
                        "model": "quality",
                        "width": 256,
                        "height": 128,
                        "consumes": ["previous"],
                    },
                ]
            },
        },
    }
)


class FakeRenderer:
    """Renders noise seeded by everything in the request; hires writes its file to the store."""

    def __init__(self, store: ArtifactStore):
        self.store = store
        self.calls: Counter[str] = Counter()
        self.behaviour: dict[str, Callable[[StageJob], StageOutput]] = {}

    async def __call__(self, job: StageJob) -> StageOutput:
        self.calls[job.stage.name] += 1
        if job.stage.name in self.behaviour:
            return self.behaviour[job.stage.name](job)
        request = job.request
        image = self.noise(job)
        if isinstance(request, LargeRenderJob):
            self.store.put_bytes(request.output_key, encode_image(image, "png"))
            return StageOutput(width=request.width, height=request.height, metrics={"tiles": 8})
        return StageOutput(image=image, timings={"compute_s": 0.001}, metrics={"batch_size": 1})

    @staticmethod
    def noise(job: StageJob) -> np.ndarray:
        request = job.request
        pixels = request.base_image if isinstance(request, LargeRenderJob) else request.init_image
        mask = None if isinstance(request, LargeRenderJob) else request.mask
        digest = hashlib.sha256(
            repr(
                (job.model_name, request.prompt, request.seed, request.steps, request.strength)
            ).encode()
        )
        for array in (pixels, mask):
            digest.update(b"-" if array is None else array.tobytes())
        rng = np.random.default_rng(int.from_bytes(digest.digest()[:8], "big"))
        return rng.integers(0, 256, (request.height, request.width, 3), np.uint8)


@pytest.fixture
def renderer(store: ArtifactStore) -> FakeRenderer:
    return FakeRenderer(store)


@pytest.fixture
def runner(store: ArtifactStore, renderer: FakeRenderer) -> PipelineRunner:
    return PipelineRunner(CONFIG, store, renderer)


REQUEST = PipelineRequest(prompt="a lighthouse at dusk", seed=7)


def run(coroutine):
    return asyncio.run(coroutine)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixels(store: ArtifactStore, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(store.get_bytes(key))))


def stored(store: ArtifactStore, stage: RunRecord) -> bytes:
    """The bytes of a stage's stored output: the stage cache's, shared by every hit."""
    return store.get_bytes(stage.outputs[STAGE_IMAGE])


def same_pixels(store: ArtifactStore, a: str, b: str) -> bool:
    return np.array_equal(pixels(store, a), pixels(store, b))


def test_three_stages_end_to_end_write_three_stage_records_and_the_pipeline_run(
    runner: PipelineRunner, store: ArtifactStore
):
    record = run(runner.run("three", REQUEST))
    assert (record.status, record.kind, record.pipeline, record.stage) == (
        "done",
        "render",
        "three",
        None,
    )
    stages = runner.stage_records(record.id)
    assert [s.stage for s in stages] == ["draft", "layout", "final"]
    assert all(s.kind == "stage" and s.status == "done" and s.cache == "miss" for s in stages)
    assert all(s.parent_id == record.id and s.pipeline == "three" for s in stages)
    assert [s.model for s in stages] == ["fast", "quality", "quality"]
    assert stages[0].inputs == {} and stages[0].params["mode"] == "txt2img"
    assert stages[1].inputs == {"previous": sha(stored(store, stages[0]))}
    assert stages[1].params["mode"] == "img2img" and stages[1].params["strength"] == 0.75
    assert pixels(store, record.outputs["image"]).shape == (64, 128, 3)
    assert record.outputs["image"] == stages[2].outputs["image"]
    assert stages[2].outputs[STAGE_IMAGE].startswith("cas/")  # content-addressed
    assert {r.id for r in runner.registry.list(pipeline="three")} == {
        record.id,
        *(s.id for s in stages),
    }
    assert record.metrics == {"cache_misses": 3}
    # the run state keeps the params keys that stored runs and the HTTP views read
    assert list(record.params) == [
        "stages",
        "next_stage",
        "stage_runs",
        "approved",
        "rerun_from",
        "overrides",
        "input_keys",
        "text_boxes",
    ]
    assert record.params["next_stage"] == 3
    assert record.params["stage_runs"] == {s.stage: s.id for s in stages}


def test_rerun_with_one_changed_stage_reuses_the_stages_before_it(
    runner: PipelineRunner, renderer: FakeRenderer, store: ArtifactStore
):
    first = run(runner.run("three", REQUEST))
    again = run(runner.rerun(first.id, "layout", {"steps": "7"}))
    assert again.status == "done" and again.parent_id == first.id
    assert again.params["rerun_from"] == "layout" and again.params["overrides"] == {"steps": "7"}
    old, new = runner.stage_records(first.id), runner.stage_records(again.id)
    assert [s.cache for s in new] == ["hit", "miss", "miss"]
    assert new[0].outputs[STAGE_IMAGE] == old[0].outputs[STAGE_IMAGE]  # same content address
    assert same_pixels(store, new[0].outputs["image"], old[0].outputs["image"])
    assert new[0].params == old[0].params and new[0].inputs == old[0].inputs
    assert new[1].params["steps"] == 7
    for before, after in zip(old[1:], new[1:], strict=True):
        assert stored(store, after) != stored(store, before)
        assert not same_pixels(store, after.outputs["image"], before.outputs["image"])
    assert renderer.calls == {"draft": 1, "layout": 2, "final": 2}
    # the same request again is all cache hits: the same stored bytes, the same pixels
    third = run(runner.run("three", REQUEST))
    hits = runner.stage_records(third.id)
    assert [s.cache for s in hits] == ["hit", "hit", "hit"]
    assert [s.outputs[STAGE_IMAGE] for s in hits] == [s.outputs[STAGE_IMAGE] for s in old]
    assert set(third.outputs) == set(first.outputs) and third.metrics == {"cache_hits": 3}
    for name in first.outputs:
        assert same_pixels(store, third.outputs[name], first.outputs[name])
    assert renderer.calls == {"draft": 1, "layout": 2, "final": 2}


def test_rerun_without_changes_recomputes_from_the_stage_and_gives_the_same_bytes(
    runner: PipelineRunner, renderer: FakeRenderer, store: ArtifactStore
):
    first = run(runner.run("three", REQUEST))
    stored_before = [stored(store, s) for s in runner.stage_records(first.id)]
    again = run(runner.rerun(first.id, "final"))
    stages = runner.stage_records(again.id)
    assert [s.cache for s in stages] == ["hit", "hit", "miss"] and renderer.calls["final"] == 2
    assert [stored(store, s) for s in stages] == stored_before  # the stored bytes
    for name in first.outputs:  # and the delivered pixels
        assert same_pixels(store, again.outputs[name], first.outputs[name])


def text(store: ArtifactStore, key: str) -> dict[str, str]:
    """The PNG text chunks of the file under `key`."""
    return Image.open(io.BytesIO(store.get_bytes(key))).text


def test_each_stage_run_delivers_a_copy_tagged_with_its_own_run_and_the_cache_stays(
    runner: PipelineRunner, store: ArtifactStore
):
    request = PipelineRequest(prompt="café «phare» — 灯台", negative_prompt="fog", seed=7)
    first = run(runner.run("three", request))
    stages = runner.stage_records(first.id)
    cache = {key: store.get_bytes(key) for key in store.list_keys(f"{CACHE_PREFIX}/")}
    stored_first = [stored(store, s) for s in stages]
    second = run(runner.run("three", request))
    hits = runner.stage_records(second.id)
    assert [s.cache for s in hits] == ["hit", "hit", "hit"]
    assert {key: store.get_bytes(key) for key in store.list_keys(f"{CACHE_PREFIX}/")} == cache
    assert [stored(store, s) for s in hits] == stored_first  # the cache entries' bytes
    for stage in (*stages, *hits):
        delivered = stage.outputs["image"]
        assert delivered == f"renders/{stage.id}/image.png"
        tags = text(store, delivered)
        assert tags["run_id"] == stage.id
        prompt, negative, settings = parse_a1111(tags["parameters"])
        assert (prompt, negative) == (request.prompt, "fog")
        assert settings["Run id"] == stage.id and settings["Seed"] == str(stage.seed)
        assert settings["Steps"] == str(stage.params["steps"])
        assert settings["Size"] == f"{stage.params['width']}x{stage.params['height']}"
        assert json.loads(tags["rendercluster"])["kind"] == "stage"
        assert text(store, stage.outputs[STAGE_IMAGE]) == {}  # the shared file is untagged
        assert same_pixels(store, delivered, stage.outputs[STAGE_IMAGE])
    for before, after in zip(stages, hits, strict=True):  # a hit: the new run's id, same pixels
        assert same_pixels(store, after.outputs["image"], before.outputs["image"])
    assert second.outputs["image"] == hits[-1].outputs["image"] != first.outputs["image"]


def test_rerun_refuses_unknown_stages_and_bad_overrides(runner: PipelineRunner):
    first = run(runner.run("three", REQUEST))
    with pytest.raises(RequestError, match="no stage 'nope'") as info:
        runner.start_rerun(first.id, "nope")
    assert info.value.field == "stage"
    with pytest.raises(RequestError, match="cannot set stepz"):
        runner.start_rerun(first.id, "final", {"stepz": 1})
    with pytest.raises(RequestError, match="steps: Input should be greater than or equal to 1"):
        runner.start_rerun(first.id, "final", {"steps": 0})
    with pytest.raises(RequestError, match="width: must be a multiple of 8"):
        runner.start_rerun(first.id, "final", {"width": 100})
    stage_id = runner.stage_records(first.id)[0].id
    with pytest.raises(RequestError, match="not a pipeline run"):
        runner.start_rerun(stage_id, "final")


def test_the_approval_gate_blocks_then_resumes_on_approve(
    runner: PipelineRunner, renderer: FakeRenderer
):
    waiting = run(runner.run("gated", REQUEST))
    assert waiting.status == "awaiting_approval"
    assert [s.stage for s in runner.stage_records(waiting.id)] == ["draft", "layout"]
    assert "final" not in renderer.calls and "image" not in waiting.outputs
    assert runner.registry.get(waiting.id).status == "awaiting_approval"
    with pytest.raises(RequestError, match="awaiting_approval; only a running run advances"):
        run(runner.advance(waiting.id))
    done = run(runner.approve(waiting.id))
    assert done.status == "done" and done.params["approved"] == ["layout"]
    draft, layout, final = runner.stage_records(done.id)
    assert [s.stage for s in (draft, layout, final)] == ["draft", "layout", "final"]
    # resumed from the stored output, not from the copy the layout stage delivered
    assert final.inputs == {"previous": sha(stored(runner.store, layout))}
    assert done.outputs["image"] == done.outputs["final"] and renderer.calls["final"] == 1
    with pytest.raises(RequestError, match="is done, not awaiting approval"):
        run(runner.approve(waiting.id))


def test_the_approval_gate_ends_the_run_on_reject(runner: PipelineRunner, renderer: FakeRenderer):
    waiting = run(runner.run("gated", REQUEST))
    rejected = runner.reject(waiting.id, "logo too small")
    assert rejected.status == "rejected"
    assert rejected.error == "rejected after stage 'layout': logo too small"
    assert runner.registry.get(waiting.id).status == "rejected"
    with pytest.raises(RequestError, match="is rejected, not awaiting approval"):
        run(runner.approve(waiting.id))
    assert "final" not in renderer.calls and "image" not in rejected.outputs


def test_a_rerun_asks_again_only_at_gates_not_yet_passed(runner: PipelineRunner):
    waiting = run(runner.run("gated", REQUEST))
    skipping = run(runner.rerun(waiting.id, "final", {"steps": 3}))  # layout never approved
    assert skipping.status == "awaiting_approval" and skipping.params["next_stage"] == 2
    done = run(runner.approve(waiting.id))
    assert run(runner.rerun(done.id, "final", {"steps": 3})).status == "done"
    again = run(runner.rerun(done.id, "layout", {"steps": 3}))
    assert again.status == "awaiting_approval" and again.params["next_stage"] == 2
    assert run(runner.approve(again.id)).params["approved"] == ["layout"]


def blank(job: StageJob) -> StageOutput:
    return StageOutput(image=np.zeros((job.stage.height, job.stage.width, 3), np.uint8))


def crash(job: StageJob) -> StageOutput:
    raise JobFailed(job.stage.name, "replica died three times")


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (blank, "stage 'layout': not_blank check failed: output is blank"),
        (crash, "stage 'layout': job layout failed: replica died three times"),
    ],
)
def test_a_failing_stage_leaves_no_final_artifact_and_a_record_that_says_why(
    runner: PipelineRunner, renderer: FakeRenderer, store: ArtifactStore, behaviour, reason
):
    renderer.behaviour["layout"] = behaviour
    failed = run(runner.run("three", REQUEST))
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.startswith(reason)
    assert runner.registry.get(failed.id).error == failed.error
    assert "image" not in failed.outputs and set(failed.outputs) == {"draft"}
    assert "final" not in renderer.calls
    draft, layout = runner.stage_records(failed.id)
    assert (draft.status, layout.status, layout.error) == ("done", "failed", failed.error)
    assert layout.parent_id == failed.id and "image" not in layout.outputs
    assert [r.stage for r in runner.registry.list(pipeline="three")] == ["layout", "draft", None]
    images = [key for key in store.list_keys("cas/") if key.endswith(".png")]
    assert images == [draft.outputs[STAGE_IMAGE]]  # only the draft's
    assert store.list_keys("renders/") == [draft.outputs["image"]]
    assert len(store.list_keys(f"{CACHE_PREFIX}/")) == 1
    # fixed, the same request recomputes the failed stage and reuses the draft
    del renderer.behaviour["layout"]
    fixed = run(runner.run("three", REQUEST))
    assert [s.cache for s in runner.stage_records(fixed.id)] == ["hit", "miss", "miss"]


def test_a_hires_stage_job_carries_the_model_s_limit_for_the_integrated_text_pass(
    store: ArtifactStore, renderer: FakeRenderer
):
    quality = CONFIG.models["quality"].model_copy(update={"max_pixels_per_call": 5000})
    config = CONFIG.model_copy(update={"models": {**CONFIG.models, "quality": quality}})
    jobs: list[LargeRenderJob] = []

    def hires(job: StageJob) -> StageOutput:
        assert isinstance(job.request, LargeRenderJob)
        jobs.append(job.request)
        store.put_bytes(job.request.output_key, encode_image(renderer.noise(job), "png"))
        return StageOutput(width=256, height=128)

    renderer.behaviour["hires"] = hires
    assert run(PipelineRunner(config, store, renderer).run("large", REQUEST)).status == "done"
    assert [job.max_call_pixels for job in jobs] == [5000]


def test_hires_stage_output_is_checked_and_removed_when_it_fails(
    runner: PipelineRunner, renderer: FakeRenderer, store: ArtifactStore
):
    done = run(runner.run("large", REQUEST))
    assert done.status == "done"
    hires = runner.stage_records(done.id)[1]
    assert hires.params["mode"] == "hires" and hires.params["strength"] == 0.35
    assert hires.outputs["image"] == done.outputs["image"]
    assert hires.outputs[STAGE_IMAGE].startswith(f"{CACHE_PREFIX}/")
    assert same_pixels(store, done.outputs["image"], hires.outputs[STAGE_IMAGE])
    assert pixels(store, done.outputs["image"]).shape == (128, 256, 3)
    assert hires.metrics == {"tiles": 8}
    assert text(store, hires.outputs["image"])["run_id"] == hires.id

    def blank_file(job: StageJob) -> StageOutput:
        assert isinstance(job.request, LargeRenderJob)
        store.put_bytes(job.request.output_key, encode_image(blank(job).image, "png"))
        return StageOutput(width=256, height=128)

    renderer.behaviour["hires"] = blank_file
    failed = run(runner.rerun(done.id, "hires", {"steps": 9}))
    assert failed.status == "failed" and "stage 'hires': not_blank check failed" in failed.error
    keys = store.list_keys(f"{CACHE_PREFIX}/")
    assert [k for k in keys if k.endswith(".png")] == [hires.outputs[STAGE_IMAGE]]


def test_reference_and_mask_are_normalised_hashed_and_checked_up_front(
    runner: PipelineRunner, renderer: FakeRenderer
):
    reference = np.random.default_rng(1).integers(0, 256, (90, 120, 3), np.uint8)
    mask = np.zeros((90, 120), np.uint8)
    mask[30:60, 40:80] = 255
    request = PipelineRequest(prompt="poster", seed=3, reference=png(reference), mask=png(mask))
    done = run(runner.run("masked", request))
    (fix,) = runner.stage_records(done.id)
    assert fix.params["mode"] == "inpaint"
    assert fix.inputs == {"reference": sha(png(reference)), "mask": sha(png(mask))}
    assert done.inputs == fix.inputs
    with pytest.raises(RequestError, match="stage 'fix' of pipeline 'masked' consumes one"):
        runner.start("masked", PipelineRequest(prompt="p", mask=png(mask)))
    with pytest.raises(RequestError, match="no stage of pipeline 'three' consumes one"):
        runner.start("three", PipelineRequest(prompt="p", reference=png(reference)))
    empty = np.zeros((90, 120), np.uint8)
    with pytest.raises(RequestError, match="mask_coverage check failed") as info:
        runner.start(
            "masked", PipelineRequest(prompt="p", reference=png(reference), mask=png(empty))
        )
    assert info.value.field == "mask"
    with pytest.raises(RequestError, match="not a readable image"):
        runner.start("masked", PipelineRequest(prompt="p", reference=b"nope", mask=png(mask)))
    truncated = png(reference)[:200]
    with pytest.raises(RequestError, match="reference: not a readable image"):
        runner.start("masked", PipelineRequest(prompt="p", reference=truncated, mask=png(mask)))
    with pytest.raises(NotFoundError, match="no pipeline 'nope'"):
        runner.start("nope", REQUEST)
    assert renderer.calls == {"fix": 1}


@pytest.fixture
def dying_s3(aws_env: None, s3_endpoint: str, own_moto: MotoServer) -> S3Store:
    """A store on a moto server of its own (same in-process state), failing fast when down."""
    client = boto3.client(
        "s3",
        endpoint_url=own_moto.endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2),
    )
    return S3Store(
        BUCKET, prefix=f"t-{uuid.uuid4().hex[:12]}", endpoint_url=own_moto.endpoint, client=client
    )


def test_the_s3_server_stopped_mid_run_gives_a_clear_failure_and_no_partial_objects(
    dying_s3: S3Store, own_moto: MotoServer, s3_endpoint: str
):
    renderer = FakeRenderer(dying_s3)
    render = FakeRenderer.noise

    def stop_then_render(job: StageJob) -> StageOutput:
        own_moto.stop()
        return StageOutput(image=render(job))

    renderer.behaviour["layout"] = stop_then_render
    runner = PipelineRunner(CONFIG, dying_s3, renderer)
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint"):
        run(runner.run("three", REQUEST))
    # the same objects, seen through the session's moto server
    alive = S3Store(BUCKET, prefix=dying_s3.prefix, endpoint_url=s3_endpoint)
    keys = alive.list_keys()
    pngs = [key for key in keys if key.startswith("cas/")]
    records = [key for key in keys if key.startswith("runs/")]
    assert len(pngs) == 1 and len(alive.list_keys(f"{CACHE_PREFIX}/")) == 1  # the draft only
    assert len(alive.list_keys("renders/")) == 1  # and the copy it delivered
    assert len(records) == 2 and len(keys) == 5
    for key in records:
        record = RunRecord.model_validate_json(alive.get_bytes(key))
        assert (record.stage, record.status) in {("draft", "done"), (None, "running")}
    entry = json.loads(alive.get_bytes(alive.list_keys(f"{CACHE_PREFIX}/")[0]))
    assert entry["output"] == pngs[0]
    assert Image.open(io.BytesIO(alive.get_bytes(pngs[0]))).size == (64, 32)
