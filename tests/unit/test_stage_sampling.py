"""A pipeline stage's scheduler and LoRA adapters: checked at config load and on a re-run,
carried into its cache key, record and model call, and changing real pixels."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pydantic import ValidationError

from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import PipelineRequest, StageJob, StageOutput, decode_png, stage_params
from core.config import ClusterConfig, StorageConfig
from core.errors import RequestError
from core.imaging import encode_image
from core.largeformat.refine import txt2img
from core.pipelines import stage_cache_key
from core.schemas import GenerateRequest, LargeRenderJob
from core.store import open_store
from serve.engine import RenderEngine
from serve.loader import load_model
from serve.tiny_lora import save_tiny_lora

SIZE = {"width": 64, "height": 64, "steps": 2}


def cluster(lora_source: str = "/loras/ink.safetensors", **pipelines) -> ClusterConfig:
    tiny = {
        "source": "tiny:0",
        "native_resolution": 64,
        "schedulers": ["euler", "ddim"],
        "loras": [{"name": "ink", "source": lora_source, "scale": 0.8}],
    }
    return ClusterConfig.model_validate(
        {
            "models": {"tiny": tiny, "plain": {"source": "tiny:1", "native_resolution": 64}},
            "styles": {"sketch": "tiny"},
            "style_loras": {"sketch": [{"name": "ink", "scale": 0.3}]},
            "pipelines": pipelines,
        }
    )


def one_stage(**stage) -> dict:
    return {"stages": [{"name": "final", **SIZE, **stage}]}


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"model": "tiny", "scheduler": "lms"}, "scheduler 'lms' is not a scheduler this model"),
        ({"model": "tiny", "loras": [{"name": "gloss"}]}, r"loras\[0\].name 'gloss' is not"),
        (
            {"model": "plain", "loras": [{"name": "ink"}]},
            r"loras\[0\].name 'ink' .* \(allowed: none\)",
        ),
        ({"model": "plain", "scheduler": "euler"}, r"scheduler 'euler' .* \(allowed: default\)"),
    ],
)
def test_a_stage_choosing_outside_its_model_allow_lists_is_refused_at_load(stage, message):
    with pytest.raises(ValidationError, match=f"pipeline 'p' stage 'final': {message}"):
        cluster(p=one_stage(**stage))


def test_a_styled_stage_gets_the_style_adapters_unless_it_names_its_own():
    config = cluster(
        styled=one_stage(style="sketch"),
        own=one_stage(style="sketch", loras=[{"name": "ink"}], scheduler="euler"),
        none=one_stage(style="sketch", loras=[]),
        plain=one_stage(model="tiny"),
    )
    model = config.models["tiny"]

    def params(name: str) -> dict:
        return stage_params(config, config.pipelines[name].stages[0], model)

    assert params("styled")["loras"] == [{"name": "ink", "scale": 0.3}]
    assert params("own")["loras"] == [{"name": "ink", "scale": 0.8}]
    assert params("own")["scheduler"] == "euler"
    for name in ("none", "plain"):  # the params (and cache keys) of stages choosing nothing
        assert "loras" not in params(name) and params(name)["scheduler"] == "default"
    keys = {
        stage_cache_key("tiny:0", None, params(name), 7, {}) for name in ("styled", "own", "none")
    }
    assert len(keys) == 3


class RecordingRenderer:
    """Keeps every stage job; renders a gradient (hires: writes it to the store)."""

    def __init__(self, store):
        self.store, self.jobs = store, []

    async def __call__(self, job: StageJob) -> StageOutput:
        self.jobs.append(job)
        request = job.request
        image = np.zeros((request.height, request.width, 3), np.uint8)
        image[...] = np.arange(request.width, dtype=np.uint8)[None, :, None]
        if isinstance(request, LargeRenderJob):
            self.store.put_bytes(request.output_key, encode_image(image, "png"))
            return StageOutput(width=request.width, height=request.height)
        return StageOutput(image=image)


def test_render_and_hires_stages_call_their_model_with_the_stage_choices(tmp_path):
    pipeline = {
        "stages": [
            {"name": "final", "model": "tiny", "scheduler": "ddim", **SIZE},
            {"name": "hires", "kind": "hires", "style": "sketch", "width": 128, "height": 128,
             "consumes": ["previous"]},
        ]
    }  # fmt: skip
    config = cluster(p=pipeline)
    store = open_store(StorageConfig(kind="local", path=tmp_path))
    renderer = RecordingRenderer(store)
    runner = PipelineRunner(config, store, renderer)
    done = asyncio.run(runner.run("p", PipelineRequest(prompt="a kite", seed=3)))
    assert done.status == "done", done.error
    final, hires = (job.request for job in renderer.jobs)
    assert isinstance(final, GenerateRequest) and (final.scheduler, final.loras) == ("ddim", ())
    assert isinstance(hires, LargeRenderJob) and hires.loras == (("ink", 0.3),)
    assert txt2img(hires, 64, 64, seed=1).loras == (("ink", 0.3),)  # every tile samples so
    records = runner.stage_records(done.id)
    assert records[0].params["scheduler"] == "ddim" and "loras" not in records[0].params
    assert records[1].params["loras"] == [{"name": "ink", "scale": 0.3}]

    with pytest.raises(RequestError) as refused:
        runner.start_rerun(done.id, "final", {"scheduler": "lms"})
    assert refused.value.field == "stages.final.scheduler"
    assert "'lms' is not a scheduler this model allows" in refused.value.message
    with pytest.raises(RequestError) as refused:
        runner.start_rerun(done.id, "final", {"loras": [{"name": "nope"}]})
    assert refused.value.field == "stages.final.loras[0].name"

    again = asyncio.run(runner.rerun(done.id, "final", {"loras": [{"name": "ink", "scale": 1}]}))
    assert again.status == "done", again.error
    assert renderer.jobs[-2].request.loras == (("ink", 1.0),)  # the re-run stage renders anew


def test_a_stage_adapter_changes_real_pixels_as_a_single_render_with_it(tmp_path):
    lora = save_tiny_lora(tmp_path / "lora", seed=1)
    config = cluster(
        str(lora), on=one_stage(model="tiny", loras=[{"name": "ink"}]), off=one_stage(model="tiny")
    )
    engine = RenderEngine(load_model(config.models["tiny"], tmp_path / "cache"), 1, False)

    async def render(job: StageJob) -> StageOutput:
        return StageOutput(image=engine.render([job.request])[0].image)

    store = open_store(StorageConfig(kind="local", path=tmp_path / "store"))
    runner = PipelineRunner(config, store, render)
    request = PipelineRequest(prompt="a red barn", seed=5)
    on, off = (asyncio.run(runner.run(name, request)) for name in ("on", "off"))

    def pixels(record) -> np.ndarray:
        return decode_png(store.get_bytes(record.outputs["image"]))

    single = GenerateRequest(
        prompt="a red barn", seed=5, width=64, height=64, steps=2,
        guidance=config.models["tiny"].default_guidance, loras=(("ink", 0.8),),
    )  # fmt: skip
    assert np.array_equal(pixels(on), engine.render([single])[0].image)
    assert not np.array_equal(pixels(on), pixels(off))
