"""CLI over HTTP for run records, pipelines, approvals, re-runs and the variance check.

`runs_app` (runs list|show|diff) and `pipeline_app` (pipeline list|run|show) are
typer sub-apps; `register(app)` adds approve, reject, rerun and variance as
top-level commands. Every command talks to a running cluster at `--url`.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image
from rich import box
from rich.console import Console
from rich.table import Table

from cli.client import RenderClient
from cli.errors import one_line_errors
from cli.options import DEFAULT_URL, JsonOption, UrlOption, emit
from cli.text_boxes import TextBoxesOption, read_text_boxes
from core.errors import RequestError
from core.variance import layout_variance

__all__ = ["parse_settings", "pipeline_app", "register", "runs_app"]

console = Console(highlight=False)
runs_app = typer.Typer(help="Query the run records: list, show, diff.", no_args_is_help=True)
pipeline_app = typer.Typer(
    help="Staged pipelines: list them, run one, show a run.", no_args_is_help=True
)

WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait until the run stops (gate, end, failure).")
]


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``["steps=40", "model=fast"]`` -> ``{"steps": 40, "model": "fast"}``.

    Values are read as JSON (numbers, true/false, null) and otherwise kept as text.
    """
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RequestError("set", f"expected KEY=VALUE, got {item!r}")
        try:
            settings[key] = json.loads(text)
        except ValueError:
            settings[key] = text
    return settings


# -- runs ----------------------------------------------------------------------------


@runs_app.command("list")
def list_runs(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    style: Annotated[str | None, typer.Option(help="Only this style.")] = None,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline.")] = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    provider: Annotated[
        str | None, typer.Option(help="Only hosted calls to this provider (openai, ideogram, ...).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601, UTC).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1)] = 50,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Run records matching every filter, newest first."""
    filters = {
        "model": model,
        "style": style,
        "pipeline": pipeline,
        "campaign": campaign,
        "status": status,
        "provider": provider,
        "since": since,
        "until": until,
        "limit": limit,
    }
    with one_line_errors(as_json):
        page = RenderClient(url).get(
            "/v1/runs", **{k: v for k, v in filters.items() if v is not None}
        )
    if as_json:
        return emit(page)
    runs = page["runs"]
    table = Table(title=f"{len(runs)} runs", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True, min_width=31)
    for column in ("status", "pipeline/stage", "model", "cache", "seed", "cost", "prompt"):
        table.add_column(column, no_wrap=True)
    for run in runs:
        where = "/".join(part for part in (run["pipeline"], run["stage"]) if part) or "-"
        cost = run.get("cost_usd")
        table.add_row(
            run["id"],
            run["status"],
            where,
            run["model"],
            run["cache"] or "-",
            str(run["seed"]),
            "-" if cost is None else f"${cost:.4f}",
            _short(run["prompt"], 24),
        )
    costs = [run["cost_usd"] for run in runs if run.get("cost_usd") is not None]
    if costs:
        table.caption = f"hosted calls cost ${sum(costs):.4f} in all"
    console.print(table)


@runs_app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """One run record, as JSON (`--json`: on one line, never wrapped)."""
    with one_line_errors(as_json):
        record = RenderClient(url).get(f"/v1/runs/{run_id}")
    if as_json:
        return emit(record)
    console.print_json(data=record)


@runs_app.command("diff")
def diff_runs(
    run_a: Annotated[str, typer.Argument(help="First run id.")],
    run_b: Annotated[str, typer.Argument(help="Second run id.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Every field that differs between two runs."""
    with one_line_errors(as_json):
        diff = RenderClient(url).get(f"/v1/runs/{run_a}/diff/{run_b}")
    if as_json:
        return emit(diff)
    changes = diff["changes"]
    if not changes:
        console.print("no differences")
        return
    table = Table(title=f"{run_a} -> {run_b}")
    for column in ("field", "a", "b"):
        table.add_column(column)
    for change in changes:
        table.add_row(change["field"], _json(change["a"]), _json(change["b"]))
    console.print(table)


# -- pipelines -----------------------------------------------------------------------


@pipeline_app.command("list")
def list_pipelines(url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Configured pipelines and their stages."""
    with one_line_errors(as_json):
        listing = RenderClient(url).get("/v1/pipelines")
    if as_json:
        return emit(listing)
    pipelines = listing["pipelines"]
    for pipeline in pipelines:
        stages = " -> ".join(
            stage["name"] + (" (approval)" if stage["approval"] == "required" else "")
            for stage in pipeline["stages"]
        )
        console.print(f"[bold]{pipeline['name']}[/]: {stages}")


@pipeline_app.command("run")
def run_pipeline(
    name: Annotated[str, typer.Argument(help="Pipeline name.")],
    prompt: Annotated[str, typer.Option(help="What to draw.")],
    negative_prompt: Annotated[str, typer.Option(help="What to keep out.")] = "",
    seed: Annotated[int | None, typer.Option(help="Seed (random if unset).")] = None,
    reference: Annotated[Path | None, typer.Option(help="Reference image file.")] = None,
    mask: Annotated[Path | None, typer.Option(help="Mask image file (white: repaint).")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign the run belongs to.")] = None,
    text_boxes: TextBoxesOption = None,
    wait: WaitOption = True,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Start a run of pipeline NAME; with --wait, show it once it stops."""
    body: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative_prompt, "wait": wait}
    for field, value in (("seed", seed), ("campaign", campaign)):
        if value is not None:
            body[field] = value
    with one_line_errors(as_json):
        body["text_boxes"] = read_text_boxes(text_boxes)
        for field, path in (("reference", reference), ("mask", mask)):
            if path is not None:
                body[field] = base64.b64encode(path.read_bytes()).decode()
        view = RenderClient(url).post(f"/v1/pipelines/{name}/runs", body)
    _print_run(view, as_json)


@pipeline_app.command("show")
def show_pipeline_run(
    run_id: Annotated[str, typer.Argument(help="Pipeline run id.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """A pipeline run, stage by stage."""
    with one_line_errors(as_json):
        view = RenderClient(url).get(f"/v1/pipelines/runs/{run_id}")
    _print_run(view, as_json)


# -- top-level commands --------------------------------------------------------------


def approve(
    run_id: Annotated[str, typer.Argument(help="Pipeline run awaiting approval.")],
    wait: WaitOption = False,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Approve a run waiting at a gate; it goes on to its next stages."""
    with one_line_errors(as_json):
        view = RenderClient(url).post(f"/v1/renders/{run_id}/approve", {"wait": wait})
    _print_run(view, as_json)


def reject(
    run_id: Annotated[str, typer.Argument(help="Pipeline run awaiting approval.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the run's record).")] = "",
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Reject a run waiting at a gate; it ends with status rejected."""
    with one_line_errors(as_json):
        view = RenderClient(url).post(f"/v1/renders/{run_id}/reject", {"reason": reason})
    _print_run(view, as_json)


def rerun(
    run_id: Annotated[str, typer.Argument(help="Pipeline run to repeat.")],
    stage: Annotated[str, typer.Option(help="Stage to recompute from.")],
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE for that stage, e.g. steps=40 (repeatable)."),
    ] = None,
    wait: WaitOption = True,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Re-run a pipeline run from STAGE; earlier stages come from the stage cache."""
    with one_line_errors(as_json):
        body = {"stage": stage, "set": parse_settings(settings or []), "wait": wait}
        view = RenderClient(url).post(f"/v1/renders/{run_id}/rerun", body)
    _print_run(view, as_json)


def variance(
    prompt: Annotated[str, typer.Option(help="What to draw.")],
    model: Annotated[str, typer.Option(help="Model to measure.")],
    n: Annotated[int, typer.Option("--n", help="Number of seeds.", min=2)] = 10,
    first_seed: Annotated[int, typer.Option(help="Seeds are FIRST_SEED .. +N-1.", min=0)] = 0,
    width: Annotated[int | None, typer.Option(help="Width (default: the model's).")] = None,
    height: Annotated[int | None, typer.Option(help="Height (default: the model's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Steps (default: the model's).")] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Render N seeds of one prompt and print the layout variance (0: same layout every time)."""
    body = {"prompt": prompt, "model": model, "width": width, "height": height, "steps": steps}
    body = {key: value for key, value in body.items() if value is not None}
    table = Table(title=f"{model}: {n} seeds")
    for column in ("seed", "render", "compute s", "wall s"):
        table.add_column(column)
    images, renders = [], []
    with one_line_errors(as_json):
        client = RenderClient(url)
        for seed in range(first_seed, first_seed + n):
            started = time.perf_counter()
            answer = client.post("/v1/renders", {**body, "seed": seed})
            wall_s = time.perf_counter() - started
            images.append(_decode(answer["image_base64"]))
            compute_s = answer["timings"].get("compute_s")
            renders.append({"seed": seed, "id": answer["id"], "compute_s": compute_s})
            compute = "-" if compute_s is None else f"{compute_s:.2f}"
            table.add_row(str(seed), answer["id"], compute, f"{wall_s:.2f}")
        figure = layout_variance(images)
    if as_json:
        return emit({"model": model, "renders": renders, "layout_variance": figure})
    console.print(table)
    console.print(f"layout variance: [bold]{figure:.4f}[/] (mean pairwise, 0..1)")


def register(app: typer.Typer) -> None:
    """Add approve, reject, rerun and variance to `app` as top-level commands."""
    for command in (approve, reject, rerun, variance):
        app.command()(command)


# -- output --------------------------------------------------------------------------


def _print_run(view: dict[str, Any], as_json: bool = False) -> None:
    """A pipeline run: one line for the run, a table of its stages, their image URLs."""
    if as_json:
        return emit(view)
    line = f"run [bold]{view['id']}[/] ({view['pipeline']}, seed {view['seed']}): {view['status']}"
    console.print(line)
    table = Table()
    for column in ("stage", "status", "cache", "model", "size", "steps", "seconds"):
        table.add_column(column)
    for stage in view["stages"]:
        params = stage.get("params") or {}
        size = f"{params['width']}x{params['height']}" if params else "-"
        seconds = (stage.get("timings") or {}).get("total_s")
        table.add_row(
            stage["name"],
            stage["status"],
            stage.get("cache") or "-",
            stage.get("model") or "-",
            size,
            str(params.get("steps", "-")),
            "-" if seconds is None else f"{seconds:.2f}",
        )
    console.print(table)
    for stage in view["stages"]:
        if stage.get("url"):
            console.print(f"{stage['name']}: {stage['url']}", soft_wrap=True)
    if view.get("error"):
        console.print(f"error: {view['error']}", soft_wrap=True)


def _decode(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return np.asarray(image.convert("RGB"))


def _json(value: Any) -> str:
    return "-" if value is None else _short(json.dumps(value), 80)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
