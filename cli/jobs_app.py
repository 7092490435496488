"""`rendercluster jobs list|show|cancel|wait`: the durable jobs of a running cluster."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.client import ClientError, RenderClient
from cli.errors import one_line_errors

__all__ = ["jobs_app"]

console = Console(highlight=False)
jobs_app = typer.Typer(help="Durable jobs: list, show, cancel, wait.", no_args_is_help=True)
UrlOption = Annotated[str, typer.Option("--url", help="Cluster URL.")]
DEFAULT_URL = "http://127.0.0.1:8000"
SETTLED = ("done", "failed", "cancelled", "awaiting_approval")


@jobs_app.command("list")
def list_jobs(
    url: UrlOption = DEFAULT_URL,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="hires, upscale, pipeline or campaign.")] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page (newest first).", min=1)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the page as JSON.")] = False,
) -> None:
    """Jobs newest first, with their status and progress."""
    params = {"status": status, "kind": kind, "limit": limit, "cursor": cursor}
    with one_line_errors():
        page = RenderClient(url).get("/v1/jobs", **{k: v for k, v in params.items() if v})
    if as_json:
        print(json.dumps(page))
        return
    table = Table("id", "kind", "status", "progress", "phase", "attempts", "error")
    for job in page["jobs"]:
        progress = job["progress"]
        error = (job.get("error") or {}).get("message", "")
        table.add_row(
            job["id"],
            job["kind"],
            job["status"],
            f"{progress['done']}/{progress['total']}",
            progress["phase"],
            str(job["attempts"]),
            error[:60],
        )
    console.print(table)
    if page.get("next_cursor"):
        console.print(f"more: --cursor {page['next_cursor']}")


@jobs_app.command("show")
def show(job_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """One job as JSON."""
    with one_line_errors():
        print(json.dumps(RenderClient(url).get(f"/v1/jobs/{job_id}"), indent=2))


@jobs_app.command("cancel")
def cancel(job_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """Stop a job: tiles in flight are abandoned, nothing is delivered."""
    with one_line_errors():
        job = RenderClient(url).post(f"/v1/jobs/{job_id}/cancel", {})
    console.print(f"job {job['id']} {job['status']}")


@jobs_app.command("wait")
def wait(
    job_id: str,
    url: UrlOption = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.", min=0)] = 86400,
) -> None:
    """Follow a job with a progress bar until it ends (or waits for approval)."""
    with one_line_errors():
        job = follow(RenderClient(url), job_id, timeout)
        if job["status"] in ("failed", "cancelled"):
            reason = (job.get("error") or {}).get("message", "")
            raise ClientError(f"job {job_id} {job['status']}: {reason}")
    console.print(f"job {job_id} {job['status']}")


def follow(client: RenderClient, job_id: str, timeout_s: float) -> dict[str, Any]:
    """Poll `GET /v1/jobs/{id}` until the job settles, showing its progress."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("queued", total=None)
        while True:
            job = client.get(f"/v1/jobs/{job_id}")
            progress = job["progress"]
            bar.update(
                task,
                completed=progress["done"],
                total=progress["total"] or None,
                description=progress["phase"],
            )
            if job["status"] in SETTLED:
                return job
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id} is still {job['status']} after {timeout_s:g}s")
            time.sleep(0.5)
