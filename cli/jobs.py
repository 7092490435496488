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


def _replicas(count: float) -> str:
    return f"{int(count)} replica" + ("" if int(count) == 1 else "s")


def _work(metrics: dict[str, float]) -> str:
    """Where a large-format job's tiles were drawn: on the model's replicas, or cut from
    the upscaled base (a hires of strength 0); and its upscaler model's share."""
    tiles = int(metrics["tiles"])
    if metrics.get("tiles_cut", 0) >= tiles:
        work = f"{tiles} tiles cut from the upscaled base, not refined"
    else:
        work = f"{tiles} tiles on {_replicas(metrics['replicas_used'])}"
    if "upscaler_calls" in metrics:
        calls, replicas = metrics["upscaler_calls"], metrics["upscaler_replicas_used"]
        work += f", upscaled in {int(calls)} tiles on {_replicas(replicas)} of the upscaler"
    return work


def describe(view: dict[str, Any], out: Path, elapsed_s: float) -> str:
    """One summary line of a finished large-format job."""
    metrics = view["result"]["metrics"]
    seed = f", seed {view['seed']}" if view.get("seed") is not None else ""
    return (
        f"wrote [bold]{out}[/] ({view['width']}x{view['height']}, render {view['id']}{seed}): "
        f"{_work(metrics)}, seam score {view['result']['seam_score']:.3f}, {elapsed_s:.1f} s"
    )
