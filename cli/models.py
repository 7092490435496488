"""`rendercluster models plan`: will each model's replica fit a GPU, with which memory option?

Weights are counted from the safetensors headers of the config's sources (a local
directory, `tiny[:seed]` built in the model cache, `s3://` by ranged GETs, `hf:` from
the local Hugging Face cache or the Hub's header-only calls); nothing is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cli.assets import default_config
from cli.errors import one_line_errors
from cli.options import JsonOption, emit
from core.config import ModelConfig
from core.config_file import load_config
from core.errors import NotFoundError
from core.memory_plan import GIB, GPU_SIZES_GB, ModelPlan, plan_model
from core.model_source import parse_source
from core.weights_digest import weights_digest
from core.weights_headers import LocalFiles, S3Files, WeightFiles, hub_or_cache

__all__ = ["models_app"]

console = Console(highlight=False)
DEFAULT_CONFIG = default_config()
models_app = typer.Typer(
    help="The config's models: their GPU memory plan; the digest that pins local weights.",
    no_args_is_help=True,
)
PLANNED_FAMILIES = ("sd", "sdxl", "sd3", "flux")
ESTIMATE_NOTE = (
    "weights: exact, from the safetensors headers at the model's GPU dtype; reserve: an "
    "ESTIMATE of working memory (CUDA context, activations, VAE decode) for one call at "
    "this size and batch (README: 'Memory options and models plan'). Offload keeps every "
    "weight in host memory."
)


def weight_files(model: ModelConfig, cache_dir: Path) -> WeightFiles:
    """Where `model`'s headers are read from."""
    source = parse_source(model.source)
    if source.kind == "tiny":
        from serve.tiny_pipeline import tiny_pipeline_dir  # builds it once (torch)

        return LocalFiles(tiny_pipeline_dir(cache_dir, source.seed, model.family))
    if source.kind == "s3":
        return S3Files(source.location)
    if source.kind == "hf":
        return hub_or_cache(source.location, source.revision or "main")
    return LocalFiles(Path(source.location))


def _gib(nbytes: int) -> str:
    return f"{nbytes / GIB:.2f}"


def _print_plan(plan: ModelPlan, sizes: tuple[int, ...]) -> None:
    console.print(
        f"[bold]{plan.name}[/]: {plan.family}, {plan.source}, {plan.dtype}, "
        f"{plan.resolution}x{plan.resolution}, batch {plan.batch}"
    )
    weights = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    weights.add_column("component", no_wrap=True)
    weights.add_column("class", no_wrap=True)
    weights.add_column("parameters", justify="right", no_wrap=True)
    weights.add_column(f"GiB {plan.dtype}", justify="right", no_wrap=True)
    for c in plan.components:
        weights.add_row(c.name, c.class_name, f"{c.params:,}", _gib(plan.component_bytes(c)))
    total = sum(c.params for c in plan.components)
    total_bytes = sum(map(plan.component_bytes, plan.components))
    weights.add_row("total", "", f"{total:,}", _gib(total_bytes))
    console.print(weights)
    fits = Table(box=box.SIMPLE_HEAD, pad_edge=False, caption="GiB; * an estimate")
    fits.add_column("option", no_wrap=True)
    for column in ("on GPU", "reserve*", "need", *(f"{gb} GB" for gb in sizes)):
        fits.add_column(column, justify="right", no_wrap=True)
    for o in plan.options:
        cells = ["fits" if o.fits[gb] else "no" for gb in sizes]
        row = (_gib(o.weights_bytes), _gib(o.reserve_bytes), _gib(o.need_bytes))
        fits.add_row(o.option, *row, *cells)
    console.print(fits)


def _as_json(plan: ModelPlan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "family": plan.family,
        "source": plan.source,
        "dtype": plan.dtype,
        "resolution": plan.resolution,
        "batch": plan.batch,
        "components": [
            {
                "name": c.name,
                "class": c.class_name,
                "parameters": c.params,
                "bytes": plan.component_bytes(c),
                "largest_module_parameters": c.largest_module_params,
            }
            for c in plan.components
        ],
        "options": [
            {
                "option": o.option,
                "gpu_weights_bytes": o.weights_bytes,
                "reserve_bytes_estimate": o.reserve_bytes,
                "need_bytes": o.need_bytes,
                "fits_gb": {str(gb): fit for gb, fit in o.fits.items()},
            }
            for o in plan.options
        ],
    }


@models_app.command("plan")
def plan(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Cluster config YAML.")
    ] = DEFAULT_CONFIG,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Only this model (repeatable).")
    ] = None,
    gpu_gb: Annotated[
        list[int] | None,
        typer.Option("--gpu-gb", min=1, max=4096, help="GPU sizes in GB (default 16 24 40 80)."),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(min=64, max=16384, help="Image side to plan for (default: native)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Per model and GPU size: weights per component and whether a replica fits with each
    memory option (from configs and safetensors headers; no weights loaded)."""
    sizes = tuple(sorted(set(gpu_gb))) if gpu_gb else GPU_SIZES_GB
    with one_line_errors(as_json):
        cluster = load_config(config)
        unknown = sorted(set(model or ()) - set(cluster.models))
        if unknown:
            raise NotFoundError("model", f"no {', '.join(unknown)} in {config}")
        plans, skipped = [], []
        for name, entry in cluster.models.items():
            if model and name not in model:
                continue
            if entry.family not in PLANNED_FAMILIES:
                skipped.append(name)
                continue
            files = weight_files(entry, Path(cluster.model_cache_dir).expanduser())
            plans.append(plan_model(name, entry, files, resolution, sizes))
    if as_json:
        emit({"models": [_as_json(p) for p in plans], "skipped": skipped, "note": ESTIMATE_NOTE})
        return
    for p in plans:
        _print_plan(p, sizes)
    if skipped:
        console.print(f"not planned (no diffusers weights): {', '.join(skipped)}")
    console.print(ESTIMATE_NOTE)


@models_app.command("digest")
def digest(
    path: Annotated[
        Path, typer.Argument(help="A model directory, weights file or ncnn .param on this disk.")
    ],
    as_json: JsonOption = False,
) -> None:
    """The content digest that pins a local, s3:// or ncnn .param source: append
    `@sha256:<hex>` to the source (for s3://, the digest of the files you upload there; for
    a .param, of it and its .bin). Reads every byte."""
    with one_line_errors(as_json):
        if not path.exists():
            raise NotFoundError("path", f"{path} is not a file or directory here")
        try:
            found = weights_digest(path)
        except FileNotFoundError:
            raise NotFoundError("path", f"no files under {path}") from None
    if as_json:
        emit({"path": str(path), "digest": found, "source": f"{path}@{found}"})
        return
    console.print(found)
    console.print(f"source: {path}@{found}", style="dim")
