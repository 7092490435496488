"""Model loading: tiny pipelines, local directories, s3:// and the Hugging Face cache."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest
import torch

from core.config import ModelConfig
from core.errors import ModelLoadError, ModelOutputError, TileOutOfMemory
from core.imaging import unit_floats_to_uint8
from core.schemas import GenerateRequest
from serve.engine import RenderEngine
from serve.loader import load_model, pick_device_and_dtype
from serve.tiny_pipeline import tiny_pipeline_dir
from tests.unit.conftest import BUCKET, DUMMY_CREDENTIALS, REGION

RENDER_SNIPPET = """
import hashlib, torch
from serve.tiny_pipeline import build_tiny_pipeline
pipe = build_tiny_pipeline(seed=7)
pipe.set_progress_bar_config(disable=True)
image = pipe("a lighthouse", num_inference_steps=2, width=64, height=64,
             generator=torch.Generator().manual_seed(11), output_type="np").images[0]
print(hashlib.sha256((image * 255).round().astype("uint8").tobytes()).hexdigest())
"""


def render_digest(model: ModelConfig, cache_dir: Path, seed: int = 5) -> str:
    engine = RenderEngine(load_model(model, cache_dir), max_batch_size=1, fixed_batch_shape=True)
    request = GenerateRequest(
        prompt="a red barn", width=64, height=64, steps=2, guidance=4.0, seed=seed
    )
    return hashlib.sha256(engine.render([request])[0].image.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_pipeline_dir(tmp_path_factory.mktemp("cache"), seed=0)


def test_tiny_pipeline_is_identical_in_two_processes():
    digests = {
        subprocess.run(
            [sys.executable, "-c", RENDER_SNIPPET], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_tiny_seeds_give_different_models(tmp_path):
    first = render_digest(ModelConfig(source="tiny:0"), tmp_path)
    second = render_digest(ModelConfig(source="tiny:1"), tmp_path)
    assert first != second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-v1-seed0", "tiny-v1-seed1"]


def test_local_directory_loads_the_same_pixels_as_tiny(tiny_dir, tmp_path):
    copy = tmp_path / "my-model"
    shutil.copytree(tiny_dir, copy)
    assert render_digest(ModelConfig(source=str(copy)), tmp_path) == render_digest(
        ModelConfig(source="tiny:0"), tiny_dir.parent
    )


def test_three_modes_share_one_set_of_weights(tiny_dir):
    loaded = load_model(ModelConfig(source=str(tiny_dir)), tiny_dir.parent)
    assert loaded.img2img.unet is loaded.txt2img.unet is loaded.inpaint.unet
    assert loaded.inpaint.vae is loaded.txt2img.vae
    assert (loaded.device, str(loaded.dtype)) == ("cpu", "torch.float32")


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_model(ModelConfig(source=str(tmp_path / "absent")), tmp_path)


def test_s3_source_is_copied_once_to_node_disk(
    tiny_dir, tmp_path, aws_env, s3_endpoint, monkeypatch
):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, **DUMMY_CREDENTIALS)
    for path in tiny_dir.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"models/tiny/{path.relative_to(tiny_dir)}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    model = ModelConfig(source=f"s3://{BUCKET}/models/tiny")
    assert render_digest(model, tmp_path) == render_digest(
        ModelConfig(source=str(tiny_dir)), tmp_path
    )
    copies = list((tmp_path / "s3").iterdir())
    assert len(copies) == 1 and (copies[0] / "model_index.json").exists()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")  # unreachable: must not be used
    load_model(model, tmp_path)


def test_empty_s3_prefix_is_a_clear_error(tmp_path, aws_env, s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    with pytest.raises(ModelLoadError, match="no objects under"):
        load_model(ModelConfig(source=f"s3://{BUCKET}/nothing-here"), tmp_path)
    assert not (tmp_path / "s3").exists() or not any((tmp_path / "s3").iterdir())


def test_hf_source_loads_a_pinned_revision_from_the_cache_offline(tiny_dir, tmp_path, monkeypatch):
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--acme--tiny-sd" / "snapshots" / revision
    shutil.copytree(tiny_dir, snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = ModelConfig(source=f"hf:acme/tiny-sd@{revision}")
    assert render_digest(model, tmp_path) == render_digest(
        ModelConfig(source=str(tiny_dir)), tmp_path
    )
    with pytest.raises(ModelLoadError, match="cannot load model from hf:acme/tiny-sd@"):
        load_model(
            ModelConfig(source="hf:acme/tiny-sd@ffffffffffffffffffffffffffffffffffffffff"), tmp_path
        )


def test_fixed_batch_shape_makes_bytes_independent_of_batching(tiny_dir):
    loaded = load_model(ModelConfig(source=str(tiny_dir)), tiny_dir.parent)
    engine = RenderEngine(loaded, max_batch_size=4, fixed_batch_shape=True)

    def request(prompt: str, seed: int) -> GenerateRequest:
        return GenerateRequest(prompt=prompt, width=64, height=64, steps=2, guidance=4.0, seed=seed)

    alone = engine.render([request("a cat", 1)])[0]
    batched = engine.render([request("dog", 2), request("a cat", 1), request("fox", 3)])
    assert alone.batch_size == 1 and batched[1].batch_size == 3
    assert np.array_equal(alone.image, batched[1].image)
    assert not np.array_equal(batched[0].image, batched[1].image)


@pytest.mark.parametrize(("fixed", "rows"), [(None, 1), (True, 4)])
def test_a_lone_request_renders_one_row_unless_the_model_fixes_the_batch_shape(
    tiny_dir, monkeypatch, fixed, rows
):
    batching = {} if fixed is None else {"fixed_batch_shape": fixed}
    config = ModelConfig(source=str(tiny_dir), batching={"max_batch_size": 4, **batching})
    loaded = load_model(config, tiny_dir.parent)
    engine = RenderEngine(
        loaded,
        max_batch_size=config.batching.max_batch_size,
        fixed_batch_shape=config.batching.fixed_batch_shape,
    )
    calls: list[int] = []
    pipeline_call = type(loaded.txt2img).__call__

    def counting(pipe, *args, **kwargs):
        calls.append(len(kwargs["prompt"]))
        return pipeline_call(pipe, *args, **kwargs)

    monkeypatch.setattr(type(loaded.txt2img), "__call__", counting)
    request = GenerateRequest(prompt="x", width=64, height=64, steps=1, guidance=1.0, seed=0)
    [result] = engine.render([request])
    assert calls == [rows] and result.batch_size == 1 and result.image.shape == (64, 64, 3)


def test_device_out_of_memory_becomes_a_tile_oom(tiny_dir, monkeypatch):
    loaded = load_model(ModelConfig(source=str(tiny_dir)), tiny_dir.parent)
    engine = RenderEngine(loaded, max_batch_size=1, fixed_batch_shape=True)

    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(type(loaded.txt2img), "__call__", exhausted)
    request = GenerateRequest(prompt="x", width=64, height=64, steps=1, guidance=1.0, seed=0)
    with pytest.raises(TileOutOfMemory, match="tile 64x64: CUDA out of memory"):
        engine.render([request])


def test_memory_guard_refuses_calls_over_the_pixel_limit(tiny_dir):
    loaded = load_model(ModelConfig(source=str(tiny_dir)), tiny_dir.parent)
    engine = RenderEngine(loaded, 1, True, max_pixels_per_call=64 * 64)
    small = GenerateRequest(prompt="x", width=64, height=64, steps=1, guidance=1.0, seed=0)
    assert engine.render([small])[0].image.shape == (64, 64, 3)
    with pytest.raises(TileOutOfMemory, match="over the replica's limit of 4096 pixels"):
        engine.render(
            [GenerateRequest(prompt="x", width=64, height=72, steps=1, guidance=1.0, seed=0)]
        )


def test_dtype_auto_is_float32_on_a_cpu_and_the_familys_half_precision_on_a_gpu():
    assert pick_device_and_dtype("auto", "flux", "cpu") == ("cpu", torch.float32)
    assert pick_device_and_dtype("auto", "flux", "cuda", bf16=True) == ("cuda", torch.bfloat16)
    assert pick_device_and_dtype("auto", "sd3", "cuda", bf16=True) == ("cuda", torch.bfloat16)
    assert pick_device_and_dtype("auto", "sdxl", "cuda", bf16=True) == ("cuda", torch.float16)
    assert pick_device_and_dtype("auto", "sd", "cuda") == ("cuda", torch.float16)
    assert pick_device_and_dtype("float16", "flux", "cuda") == ("cuda", torch.float16)  # pinned
    # a GPU without bfloat16 (before Ampere): float16 would overflow, so float32
    assert pick_device_and_dtype("auto", "flux", "cuda", bf16=False) == ("cuda", torch.float32)
    assert pick_device_and_dtype("auto", "sdxl", "cuda", bf16=False) == ("cuda", torch.float16)


def test_nan_pixels_are_an_error_naming_the_model_never_a_black_image(tiny_dir):
    """A model whose weights overflow its dtype decodes NaN: the engine says so."""
    loaded = load_model(ModelConfig(source=str(tiny_dir)), tiny_dir.parent, "quality")
    engine = RenderEngine(loaded, max_batch_size=1, fixed_batch_shape=True)
    request = GenerateRequest(prompt="x", width=64, height=64, steps=1, guidance=1.0, seed=0)
    assert engine.render([request])[0].image.std() > 0
    loaded.txt2img.vae.decoder.register_forward_hook(lambda module, args, out: out * torch.nan)
    with pytest.raises(ModelOutputError) as raised:
        engine.render([request])
    assert raised.value.count == 64 * 64 * 3
    assert str(raised.value) == (
        "model 'quality' returned 12288 NaN or infinite pixel values in float32: "
        "its weights are broken"
    )


def test_nan_or_infinity_in_half_precision_names_the_dtype_to_use():
    pixels = np.array([[[0.0, 0.5, 1.0], [np.nan, 2.0, -np.inf]]], np.float32)
    with pytest.raises(
        ModelOutputError,
        match="'flux' returned 2 NaN or infinite .* in float16: .* set its dtype to bfloat16 or",
    ):
        unit_floats_to_uint8(pixels, "flux", "float16")
    with pytest.raises(ModelOutputError, match="in bfloat16: .* set its dtype to float32$"):
        unit_floats_to_uint8(pixels, "flux", "bfloat16")
    finite = np.array([[[0.0, 0.5, 1.0], [0.25, 2.0, -1.0]]], np.float32)
    assert unit_floats_to_uint8(finite, "sd", "float16").tolist() == [[[0, 128, 255], [64, 255, 0]]]
