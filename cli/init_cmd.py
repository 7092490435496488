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
    force: Annotated[bool, typer.Option(help="Replace a file already there.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the starter config (the embedded cluster's: tiny models and the scenes model,
    CPU, logical GPUs), with the scenes model's folder beside it."""
    if out.exists() and not force:
        raise fail(f"{out} exists; pass --force to replace it", ExitCode.USAGE, as_json)
    with one_line_errors(as_json):
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STARTER_CONFIG, out)
        shutil.copytree(
            STARTER_MODELS / "scenes", out.parent / "models" / "scenes", dirs_exist_ok=True
        )
        models = sorted(load_config(out).models)  # what was written loads
    if as_json:
        emit({"config": str(out), "models": models})
    else:
        stderr.print(f"wrote {out} (models: {', '.join(models)}); next: rendercluster up -c {out}")
