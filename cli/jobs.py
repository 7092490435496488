"""Follow a large-format job with a progress bar and fetch its result."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.client import ClientError, RenderClient
from cli.exit_codes import ExitCode


def follow_job(
    client: RenderClient, view: dict[str, Any], console: Console, quiet: bool = False
) -> dict[str, Any]:
    """Poll `GET /v1/renders/{id}` until the job ends, showing tiles done / total (unless
    `quiet`); a job that did not finish raises `ClientError` (failed: code 7, or 5 when its
    text failed the gate; cancelled: 1)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tiles"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=quiet) as progress:
        task = progress.add_task(view.get("phase", "queued"), total=None)
        while view["status"] in ("queued", "running"):
            time.sleep(0.5)
            view = client.get(f"/v1/renders/{view['id']}")
            done, total = view["progress"]["done"], view["progress"]["total"]
            progress.update(task, completed=done, total=total or None, description=view["phase"])
    if view["status"] != "done":
        code = ExitCode.GATE_FAILED if "review" in view else ExitCode.SERVER_ERROR
        code = ExitCode.ERROR if view["status"] == "cancelled" else code
        raise ClientError(f"render {view['id']} {view['status']}: {view.get('error', '')}", code)
    return view


def download(client: RenderClient, view: dict[str, Any], out: Path) -> Path:
    """Write the job's output image to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(client.fetch(view["result"]["url"]))
    return out


def describe(view: dict[str, Any], out: Path, elapsed_s: float) -> str:
    """One summary line of a finished large-format job."""
    metrics = view["result"]["metrics"]
    seed = f", seed {view['seed']}" if view.get("seed") is not None else ""
    return (
        f"wrote [bold]{out}[/] ({view['width']}x{view['height']}, render {view['id']}{seed}): "
        f"{int(metrics['tiles'])} tiles on "
        f"{int(metrics['replicas_used'])} replicas, seam score "
        f"{view['result']['seam_score']:.3f}, {elapsed_s:.1f} s"
    )
