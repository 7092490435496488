"""`rendercluster campaign run|status`: submit a manifest and follow its campaign live."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from cli.assets import default_config
from cli.client import RenderClient
from cli.embedded import cluster_url
from cli.errors import one_line_errors, stderr
from cli.exit_codes import ExitCode
from cli.options import DEFAULT_URL, JsonOption, OptionalUrlOption, UrlOption, emit
from core.campaign import format_of, layout, load_manifest
from core.config_file import load_config

__all__ = ["campaign_app"]

console = Console(highlight=False)
DEFAULT_CONFIG = default_config()
campaign_app = typer.Typer(
    help="Campaigns: render a manifest of prompts x sizes once each, with a review report.",
    no_args_is_help=True,
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _rate(view: dict[str, Any]) -> str:
    rate = view.get("renders_per_minute")
    return "-" if rate is None else f"{rate:.1f}/min"


def _fields(view: dict[str, Any]) -> dict[str, str]:
    return {
        "failed": str(view["failed"]),
        "in_flight": str(view["in_flight"]),
        "rate": _rate(view),
        "eta": _duration(view.get("eta_s")),
    }


def follow(
    client: RenderClient, name: str, interval_s: float, quiet: bool = False
) -> dict[str, Any]:
    """Poll the campaign's status with a live bar (unless `quiet`) until it stops running."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]} · in flight {task.fields[in_flight]}"),
        TextColumn("· {task.fields[rate]} · ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task(name, total=None, failed="0", in_flight="0", rate="-", eta="-")
        while True:
            view = client.get(f"/v1/campaigns/{name}")
            progress.update(
                task,
                total=view["total"],
                completed=view["done"] + view["failed"],
                **_fields(view),
            )
            if view["state"] != "running":
                return view
            time.sleep(interval_s)


def _report_location(view: dict[str, Any], url: str | None, config: Path) -> str:
    """The report's URL, or its file when an embedded cluster (now stopped) wrote it."""
    storage = load_config(config).storage
    if url is not None or storage.kind == "s3":
        return view["report_url"]
    return (storage.path.resolve() / layout.report_key(view["campaign"])).as_uri()


@campaign_app.command("run")
def run(
    manifest: Annotated[
        Path, typer.Argument(help="Manifest file (.yaml, .json, .jsonl or .csv).", exists=True)
    ],
    url: OptionalUrlOption = None,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Cluster config of an embedded cluster.")
    ] = DEFAULT_CONFIG,
    gpus: Annotated[int, typer.Option(help="Logical GPUs of an embedded cluster.")] = 4,
    max_in_flight: Annotated[
        int | None, typer.Option(help="Most renders in flight (default: the server's).")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between status polls.")] = 0.5,
    as_json: JsonOption = False,
) -> None:
    """Render every item x size of MANIFEST once, showing live progress; resumes if re-run.

    Exits 1 when the campaign stopped before its end or any render failed.
    """
    started = time.perf_counter()
    with one_line_errors(as_json):
        fmt = format_of(manifest)
        name = load_manifest(manifest, fmt).campaign  # syntax and fields, before any cluster
        body: dict[str, Any] = {"manifest": manifest.read_text(encoding="utf-8-sig")}
        body |= {"format": fmt} | ({"max_in_flight": max_in_flight} if max_in_flight else {})
        try:
            with cluster_url(url, config, gpus) as base:
                client = RenderClient(base)
                submitted = client.post("/v1/campaigns", body)
                if not as_json:
                    console.print(
                        f"campaign [bold]{name}[/]: {submitted['total']} renders, "
                        f"{submitted['done']} already done"
                    )
                view = follow(client, name, interval, quiet=as_json)
        except KeyboardInterrupt:
            where = "still runs in the cluster" if url else "stopped with the embedded cluster"
            stderr.print(f"interrupted: campaign {name} {where}; run it again to resume")
            raise typer.Exit(130) from None
        view["report_location"] = _report_location(view, url, config)
    if as_json:
        emit(view)
    if view["state"] != "finished":
        stderr.print(
            f"[red]error:[/] campaign {name} stopped before its end; run it again to resume"
        )
        raise typer.Exit(ExitCode.ERROR)
    if not as_json:
        elapsed = _duration(time.perf_counter() - started)
        console.print(
            f"{view['done']} done, {view['failed']} failed in {elapsed} ({_rate(view)}); "
            f"report: [bold]{view['report_location']}[/]"
        )
    if view["failed"]:
        stderr.print(f"[red]error:[/] {view['failed']} renders failed; the report lists why")
        raise typer.Exit(ExitCode.ERROR)


@campaign_app.command("status")
def status(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Done, failed, in flight, renders per minute and ETA of a campaign."""
    with one_line_errors(as_json):
        view = RenderClient(url).get(f"/v1/campaigns/{name}")
    if as_json:
        return emit(view)
    table = Table(title=f"campaign {name} ({view['state']})", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    rows = [
        ("done", f"{view['done']} / {view['total']}"),
        ("failed", str(view["failed"])),
        ("in flight", str(view["in_flight"])),
        ("pending", str(view["pending"])),
        ("renders per minute", _rate(view)),
        ("ETA", _duration(view.get("eta_s"))),
    ]
    runner = view.get("runner") or {}
    if runner:
        rows.append(
            ("in-flight bound", f"{runner['bound']} (most seen {runner['max_in_flight_observed']})")
        )
        if runner.get("for_review"):
            rows.append(("of the failed, kept for review", str(runner["for_review"])))
    rows += [
        (label, view[key])
        for label, key in (("report", "report_url"), ("CSV", "csv_url"))
        if key in view
    ]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
