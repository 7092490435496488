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
from cli.exit_codes import ExitCode
from cli.options import DEFAULT_URL, JsonOption, UrlOption, emit

__all__ = ["jobs_app"]

console = Console(highlight=False)
jobs_app = typer.Typer(help="Durable jobs: list, show, cancel, wait.", no_args_is_help=True)
SETTLED = ("done", "failed", "cancelled", "awaiting_approval")


@jobs_app.command("list")
def list_jobs(
    url: UrlOption = DEFAULT_URL,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="hires, upscale, pipeline or campaign.")] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page (newest first).", min=1)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Jobs newest first, with their status and progress."""
    params = {"status": status, "kind": kind, "limit": limit, "cursor": cursor}
    with one_line_errors(as_json):
        page = RenderClient(url).get("/v1/jobs", **{k: v for k, v in params.items() if v})
    if as_json:
        return emit(page)
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
def show(job_id: str, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """One job as JSON (`--json`: on one line)."""
    with one_line_errors(as_json):
        job = RenderClient(url).get(f"/v1/jobs/{job_id}")
    print(json.dumps(job, indent=None if as_json else 2))


@jobs_app.command("cancel")
def cancel(job_id: str, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Stop a job: tiles in flight are abandoned, nothing is delivered."""
    with one_line_errors(as_json):
        job = RenderClient(url).post(f"/v1/jobs/{job_id}/cancel", {})
    if as_json:
        return emit(job)
    console.print(f"job {job['id']} {job['status']}")


@jobs_app.command("wait")
def wait(
    job_id: str,
    url: UrlOption = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.", min=0)] = 86400,
    as_json: JsonOption = False,
) -> None:
    """Follow a job with a progress bar until it ends (or waits for approval); a job that
    failed exits with code 7 (5 when its text failed the gate), one cancelled with 1."""
    with one_line_errors(as_json):
        job = follow(RenderClient(url), job_id, timeout, quiet=as_json)
        if job["status"] in ("failed", "cancelled"):
            reason = (job.get("error") or {}).get("message", "")
            raise ClientError(f"job {job_id} {job['status']}: {reason}", job_exit_code(job))
    if as_json:
        return emit(job)
    console.print(f"job {job_id} {job['status']}")


def job_exit_code(job: dict[str, Any]) -> ExitCode:
    """The exit code of a job that ended without a result."""
    if job["status"] == "cancelled":
        return ExitCode.ERROR
    code = (job.get("error") or {}).get("code")
    return ExitCode.GATE_FAILED if code == "gate_failed" else ExitCode.SERVER_ERROR


def follow(
    client: RenderClient, job_id: str, timeout_s: float, quiet: bool = False
) -> dict[str, Any]:
    """Poll `GET /v1/jobs/{id}` until the job settles, showing its progress (unless `quiet`)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console, transient=True, disable=quiet) as bar:
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
                raise ClientError(
                    f"job {job_id} is still {job['status']} after {timeout_s:g}s",
                    ExitCode.SERVER_ERROR,
                )
            time.sleep(0.5)
