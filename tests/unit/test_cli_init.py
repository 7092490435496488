"""`rendercluster init`: the starter config and the scenes model beside it; a scenes
folder already there is kept unless --force."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app


def _init(folder, *extra: str):
    return CliRunner().invoke(app, ["init", "--out", str(folder / "rendercluster.yaml"), *extra])


def test_init_keeps_a_scenes_model_already_there_unless_forced(tmp_path):
    made = _init(tmp_path, "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["scenes_kept"] is False
    weights = tmp_path / "models" / "scenes" / "unet" / "diffusion_pytorch_model.safetensors"
    shipped = weights.read_bytes()
    weights.write_bytes(b"a model trained here")
    (tmp_path / "rendercluster.yaml").unlink()
    again = _init(tmp_path, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {
        "config": str(tmp_path / "rendercluster.yaml"),
        "models": ["fast", "quality", "scenes", "upscaler"],
        "scenes_kept": True,
    }
    assert weights.read_bytes() == b"a model trained here"
    refused = _init(tmp_path)
    assert refused.exit_code != 0 and "exists; pass --force" in refused.output
    forced = _init(tmp_path, "--force")
    assert forced.exit_code == 0, forced.output
    assert weights.read_bytes() == shipped
