"""ClusterConfig: the shipped file loads; bad files list every problem by path and line."""

from __future__ import annotations

import pytest

from core.config_file import load_config, missing_local_sources, parse_config
from core.errors import ConfigError

GOOD = """
models:
  a: {source: "tiny:3", native_resolution: 256}
  b: {source: "hf:org/model@0123abc", family: sdxl}
styles: {photo: a, poster: b}
default_style: photo
"""


def test_shipped_local_config_loads_two_differing_tiny_models_and_three_styles():
    config = load_config("configs/local.yaml")
    assert set(config.models) == {"quality", "fast", "scenes", "upscaler"}
    assert config.models["scenes"].source == "models/scenes"  # from the checkout's root
    assert config.models["quality"].source != config.models["fast"].source
    assert set(config.styles) == {"photoreal", "typography", "draft"}
    assert config.resolve_model(None, "draft") == "fast"
    assert config.resolve_model(None, None) == "quality"  # default style photoreal


def test_a_relative_local_source_is_found_from_the_config_files_folder(tmp_path, monkeypatch):
    model = tmp_path / "project" / "models" / "mine"
    model.mkdir(parents=True)
    config_path = tmp_path / "project" / "cluster.yaml"
    config_path.write_text(
        "models:\n  mine: {source: models/mine}\n  gone: {source: models/gone}\n"
        "  tiny: {source: 'tiny:2'}\n"
    )
    monkeypatch.chdir(tmp_path)  # neither folder is under the current directory
    config = load_config(config_path)
    assert config.models["mine"].source == str(model)
    assert config.models["gone"].source == "models/gone"  # the loader will name it
    assert config.models["tiny"].source == "tiny:2"
    monkeypatch.chdir(tmp_path / "project")
    assert load_config("cluster.yaml").models["mine"].source == "models/mine"


def test_local_sources_missing_on_this_machine_are_named_by_their_field(tmp_path, monkeypatch):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "ink.safetensors").write_bytes(b"")
    config_path = tmp_path / "cluster.yaml"
    config_path.write_text(
        "models:\n"
        "  mine:\n"
        "    source: models/mine\n"
        "    loras: [{name: ink, source: ink.safetensors},\n"
        "            {name: gone, source: gone.safetensors}]\n"
        "  gone: {source: models/gone}\n"
        "  tiny: {source: 'tiny:2', loras: [{name: hub, source: 'hf:org/lora@1'}]}\n"
        "  bucket: {source: 's3://weights/sd'}\n"
    )
    monkeypatch.chdir(tmp_path)
    missing = missing_local_sources(load_config(config_path))
    assert [line.split(":")[0] for line in missing] == [
        "models.mine.loras[1].source",
        "models.gone.source",
    ]
    assert "'models/gone' is not a file or directory here" in missing[1]


def test_model_wins_over_style_and_unknown_names_raise():
    config = parse_config(GOOD)
    assert config.resolve_model("b", "photo") == "b"
    with pytest.raises(KeyError, match="style 'nope'"):
        config.resolve_model(None, "nope")
    with pytest.raises(KeyError, match="model 'zz'"):
        config.resolve_model("zz", None)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="bad.yaml")
    return info.value.problems


def test_every_problem_is_listed_with_its_path_and_line():
    problems = problems_of(
        """models:
  a:
    source: "ftp://nowhere"
    autoscaling: {min_replicas: 3, max_replicas: 1}
    gpus_per_replica: -1
    typo_field: 1
limits:
  max_width: 0
"""
    )
    text = "\n".join(problems)
    assert "models.a.source (line 3)" in text and "ftp://nowhere" in text
    assert "models.a.autoscaling (line 4): max_replicas (1) must be >= min_replicas (3)" in text
    assert "models.a.gpus_per_replica (line 5)" in text
    assert "models.a.typo_field (line 6): Extra inputs are not permitted" in text
    assert "limits.max_width (line 8)" in text
    assert len(problems) == 5


def test_styles_must_name_defined_models_and_default_style_must_exist():
    problems = problems_of(
        """models:
  a: {source: tiny}
styles: {photo: a, poster: missing}
"""
    )
    assert len(problems) == 1
    assert "styles (line 3)" in problems[0] and "'poster' -> 'missing'" in problems[0]
    problems = problems_of("models: {a: {source: tiny}}\nstyles: {photo: a}\ndefault_style: nope\n")
    assert problems == [
        "default_style (line 3): default_style 'nope' is not one of the styles (photo)"
    ]


def test_api_keys_cannot_be_written_in_the_yaml():
    problems = problems_of("models: {a: {source: tiny}}\nauth: {api_keys: [secret]}\n")
    assert problems == ["auth.api_keys (line 2): Extra inputs are not permitted"]


def test_invalid_yaml_and_missing_file_are_config_errors(tmp_path):
    assert problems_of("models:\n  a: [unclosed\n")[0].startswith("line 3: not valid YAML")
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "missing.yaml")


def test_s3_storage_needs_a_bucket():
    problems = problems_of("models: {a: {source: tiny}}\nstorage: {kind: s3}\n")
    assert problems == ["storage (line 2): bucket is required when kind is 's3'"]
