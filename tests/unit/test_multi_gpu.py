"""Replicas that book several GPUs (issue 15): the placement decision, its validation, and
the loader asking diffusers for `device_map="balanced"` (no GPU here: the decision and the
call are checked; the CPU path still loads and renders)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.config import ModelConfig
from core.memory_options import MemoryOptions, memory_actions
from serve import loader
from serve.loader import load_model


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
@pytest.mark.parametrize(
    ("device", "gpus", "placement"),
    [
        ("cuda", 2, "device_map_balanced"),
        ("cuda", 4, "device_map_balanced"),
        ("cuda", 1, "to_device"),
        ("cuda", 0.5, "to_device"),
        ("cpu", 2, "to_device"),
    ],
)
def test_several_gpus_place_components_across_them_only_on_cuda(family, device, gpus, placement):
    actions = memory_actions(MemoryOptions(vae_tiling=True), family, device, gpus)
    assert actions == [placement, "vae_tiling"]


def test_offload_and_several_gpus_are_refused_together_naming_both():
    with pytest.raises(ValidationError, match=r"memory.offload \(model\).*gpus_per_replica 2"):
        ModelConfig(source="tiny:0", gpus_per_replica=2, memory={"offload": "model"})
    ModelConfig(source="tiny:0", gpus_per_replica=1, memory={"offload": "model"})


def test_a_fraction_of_gpus_above_one_is_refused():
    with pytest.raises(ValidationError, match=r"gpus_per_replica \(1.5\) above 1 must be a whole"):
        ModelConfig(source="tiny:0", gpus_per_replica=1.5)
    assert ModelConfig(source="tiny:0", gpus_per_replica=0.5).gpus_per_replica == 0.5


def test_upscalers_are_not_placed_by_device_map():
    model = ModelConfig(
        source="realesrgan:animevideov3-x4", family="upscaler", upscaler={}, gpus_per_replica=1.5
    )
    assert model.gpus_per_replica == 1.5


def test_the_loader_asks_diffusers_for_a_balanced_device_map_on_several_gpus(tmp_path, monkeypatch):
    asked: list[dict] = []
    from_pretrained = loader.AutoPipelineForText2Image.from_pretrained

    def recording(directory, **kwargs):
        asked.append(dict(kwargs))
        kwargs.pop("device_map", None)  # no GPU here: load on the CPU
        return from_pretrained(directory, **kwargs)

    monkeypatch.setattr(loader.AutoPipelineForText2Image, "from_pretrained", recording)
    monkeypatch.setattr(
        loader, "pick_device_and_dtype", lambda *a, **k: ("cuda", loader.torch.float32)
    )
    model = ModelConfig(source="tiny:0", gpus_per_replica=2)
    loaded = load_model(model, tmp_path)
    assert asked[0]["device_map"] == "balanced"
    assert loaded.memory == ("device_map_balanced",)  # never moved with .to() after
    assert loaded.describe()["memory"] == ["device_map_balanced"]


def test_one_gpu_loads_without_a_device_map(tmp_path, monkeypatch):
    asked: list[dict] = []
    from_pretrained = loader.AutoPipelineForText2Image.from_pretrained

    def recording(directory, **kwargs):
        asked.append(dict(kwargs))
        return from_pretrained(directory, **kwargs)

    monkeypatch.setattr(loader.AutoPipelineForText2Image, "from_pretrained", recording)
    loaded = load_model(ModelConfig(source="tiny:0", gpus_per_replica=2), tmp_path)
    assert "device_map" not in asked[0] and loaded.memory == ("to_device",)  # a CPU here
