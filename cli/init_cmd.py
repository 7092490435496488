"""`rendercluster init`: write a starter cluster config to begin from, anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from cli.assets import STARTER_CONFIG, STARTER_MODELS
from cli.errors import fail, one_line_errors, stderr
from cli.exit_codes import ExitCode
from cli.options import JsonOption, emit
from core.config_file import load_config

__all__ = ["init"]

OUT = Path("rendercluster.yaml")


def init(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the config.")] = OUT,
    force: Annotated[
        bool, typer.Option(help="Replace the config and the scenes model's folder if there.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the starter config (the embedded cluster's: tiny models and the scenes model,
    CPU, logical GPUs), with the scenes model's folder beside it; a scenes folder already
    there (a model you trained, say) is kept unless `--force`."""
    if out.exists() and not force:
        raise fail(f"{out} exists; pass --force to replace it", ExitCode.USAGE, as_json)
    scenes = out.parent / "models" / "scenes"
    kept = scenes.exists() and not force
    with one_line_errors(as_json):
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STARTER_CONFIG, out)
        if not kept:
            shutil.rmtree(scenes, ignore_errors=True)
            shutil.copytree(STARTER_MODELS / "scenes", scenes)
        models = sorted(load_config(out).models)  # what was written loads
    if as_json:
        emit({"config": str(out), "models": models, "scenes_kept": kept})
    else:
        note = f"; kept the {scenes} already there" if kept else ""
        stderr.print(
            f"wrote {out} (models: {', '.join(models)}{note}); next: rendercluster up -c {out}"
        )
