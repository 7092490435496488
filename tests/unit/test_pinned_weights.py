"""Local, s3:// and ncnn `.param` model sources pinned to their content (`@sha256:<hex>`):
the digest, the loader's check (an s3:// copy made before its prefix changed is copied
again), the record's revision and `rendercluster models digest`."""

from __future__ import annotations

import json
import os
import shutil

import boto3
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.config import ClusterConfig, ModelConfig
from core.config_file import locate_local_sources, missing_local_sources
from core.errors import ModelLoadError
from core.model_source import parse_source
from core.records import model_fields
from core.weights_digest import weights_digest
from serve.loader import load_model
from serve.tiny_lora import save_tiny_lora
from serve.tiny_pipeline import tiny_pipeline_dir
from serve.upscaler import load_upscaler, model_files
from tests.unit.conftest import BUCKET, DUMMY_CREDENTIALS, REGION

PIN = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_pipeline_dir(tmp_path_factory.mktemp("cache"), seed=0)


def test_the_digest_follows_the_bytes_and_names_not_the_place_or_the_times(tiny_dir, tmp_path):
    digest = weights_digest(tiny_dir)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_dir, copy)
    os.utime(copy / "model_index.json", (1, 1))
    (copy / ".complete").touch()  # hidden files (the copy marker) do not count
    assert weights_digest(copy) == digest
    (copy / "unet" / "config.json").write_text("{}")
    changed = weights_digest(copy)
    assert changed != digest
    (copy / "unet" / "config.json").rename(copy / "unet" / "other.json")
    assert weights_digest(copy) not in (digest, changed)
    weights = next(tiny_dir.rglob("*.safetensors"))
    assert weights_digest(weights) != weights_digest(weights.parent)


def test_a_pin_is_the_records_revision_and_stays_on_the_source_when_it_is_located(
    tiny_dir, tmp_path
):
    pinned = f"models/tiny@{weights_digest(tiny_dir)}"
    source = parse_source(pinned)
    assert (source.kind, source.location, source.revision) == (
        "local",
        "models/tiny",
        source.revision,
    )
    assert model_fields("m", ModelConfig(source=pinned))["model_revision"] == source.revision
    assert parse_source(f"s3://{BUCKET}/models/tiny@{PIN}").location == f"s3://{BUCKET}/models/tiny"
    assert parse_source("models/tiny").revision is None
    (tmp_path / "models").mkdir()
    shutil.copytree(tiny_dir, tmp_path / "models" / "tiny")
    config = ClusterConfig.model_validate({"models": {"tiny": {"source": pinned}}})
    located = locate_local_sources(config, tmp_path).models["tiny"].source
    assert located == f"{tmp_path / 'models' / 'tiny'}@{source.revision}"
    assert (
        missing_local_sources(
            config.model_copy(update={"models": {"tiny": ModelConfig(source=located)}})
        )
        == []
    )


def test_a_local_source_loads_only_with_the_weights_its_pin_names(tiny_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_dir, copy)
    pin = weights_digest(copy)
    load_model(ModelConfig(source=f"{copy}@{pin}"), tmp_path)
    (copy / "unet" / "config.json").write_text((copy / "unet" / "config.json").read_text() + " ")
    with pytest.raises(ModelLoadError) as refused:
        load_model(ModelConfig(source=f"{copy}@{pin}"), tmp_path)
    assert f"not the pinned {pin}" in str(refused.value)
    assert "rendercluster models digest" in str(refused.value)


def test_an_s3_copy_that_no_longer_matches_its_pin_is_copied_again(
    tiny_dir, tmp_path, aws_env, s3_endpoint, monkeypatch
):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, **DUMMY_CREDENTIALS)
    prefix = "models/pinned"

    def upload(folder):
        for path in folder.rglob("*"):
            if path.is_file():
                client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder)}")

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    old = tmp_path / "old"
    shutil.copytree(tiny_dir, old)
    (old / "unet" / "config.json").write_text((old / "unet" / "config.json").read_text() + " ")
    upload(old)
    load_model(ModelConfig(source=f"s3://{BUCKET}/{prefix}"), tmp_path / "node")  # copied
    upload(tiny_dir)  # the prefix now holds other weights; this node still has the old copy
    pinned = ModelConfig(source=f"s3://{BUCKET}/{prefix}@{weights_digest(tiny_dir)}")
    load_model(pinned, tmp_path / "node")
    (copy,) = (tmp_path / "node" / "s3").iterdir()
    assert weights_digest(copy) == weights_digest(tiny_dir)
    with pytest.raises(ModelLoadError, match=f"not the pinned {PIN}"):
        load_model(ModelConfig(source=f"s3://{BUCKET}/{prefix}@{PIN}"), tmp_path / "node")


def test_models_digest_prints_the_pin_of_a_directory_and_names_a_missing_path(tiny_dir):
    shown = CliRunner().invoke(app, ["models", "digest", str(tiny_dir), "--json"])
    assert shown.exit_code == 0, shown.output
    answer = json.loads(shown.output)
    assert answer["digest"] == weights_digest(tiny_dir)
    assert answer["source"] == f"{tiny_dir}@{answer['digest']}"
    missing = CliRunner().invoke(app, ["models", "digest", str(tiny_dir / "absent")])
    assert missing.exit_code != 0 and "is not a file or directory here" in missing.output
    assert "Traceback" not in missing.output


def test_an_ncnn_upscaler_pins_its_param_and_bin_together(tmp_path):
    shipped_param, shipped_bin = model_files("realesrgan:animevideov3-x2")
    param = tmp_path / "esrgan-x2.param"
    shutil.copy(shipped_param, param)
    shutil.copy(shipped_bin, param.with_suffix(".bin"))
    pin = weights_digest(param)
    shown = CliRunner().invoke(app, ["models", "digest", str(param), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["digest"] == pin
    model = ModelConfig(
        source=f"{param}@{pin}", family="upscaler", upscaler={"scale": 2}, gpus_per_replica=0
    )
    assert model_fields("esrgan", model)["model_revision"] == pin
    assert load_upscaler(model.source, 2).scale == 2
    weights = bytearray(param.with_suffix(".bin").read_bytes())
    weights[-4:] = bytes(4)  # the graph is the same, one weight is not
    param.with_suffix(".bin").write_bytes(bytes(weights))
    assert weights_digest(param) != pin  # the .bin counts in a .param's digest
    with pytest.raises(
        ModelLoadError, match=f"the weights there are sha256:.*not the pinned {pin}"
    ):
        load_upscaler(model.source, 2)
    with pytest.raises(ValueError, match="is an upscaler: set family 'upscaler'"):
        ModelConfig(source=f"{param}@{pin}")


def test_a_lora_adapters_pin_is_checked_when_it_loads(tmp_path):
    lora = save_tiny_lora(tmp_path / "ink", seed=1)
    pin = weights_digest(lora)
    adapter = {"name": "ink", "source": f"{lora}@{pin}"}
    loaded = load_model(ModelConfig(source="tiny:0", loras=[adapter]), tmp_path)
    assert loaded.loras == ("ink",)
    wrong = {"name": "ink", "source": f"{lora}@{PIN}"}
    with pytest.raises(ModelLoadError, match=f"the weights there are {pin}, not the pinned"):
        load_model(ModelConfig(source="tiny:0", loras=[wrong]), tmp_path)
