"""`rendercluster`: run a local cluster, render through it, and inspect it."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.client import RenderClient
from cli.errors import one_line_errors
from cli.k8s import app as k8s_app
from core.config_file import load_config
from core.errors import RequestError

app = typer.Typer(
    help="render-cluster: distributed diffusion rendering on Ray Serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(k8s_app, name="k8s")
console = Console(highlight=False)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Cluster config YAML.", show_default=True)
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="A running cluster's URL; without it an embedded one starts."),
]
DEFAULT_CONFIG = Path("configs/local.yaml")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@app.command()
def up(
    config: ConfigOption = DEFAULT_CONFIG,
    gpus: Annotated[int, typer.Option(help="Logical GPUs to give Ray.", min=0)] = 4,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: from config).")] = None,
) -> None:
    """Start Ray with logical GPUs and the Serve app; run until Ctrl-C."""
    from serve.local_cluster import start_local_cluster

    with one_line_errors():
        cluster_config = load_config(config)
        cluster = start_local_cluster(cluster_config, gpus=gpus, port=port)
    console.print(f"render-cluster is up at [bold]{cluster.url}[/] ({cluster.startup_s:.1f} s)")
    console.print("Ctrl-C stops it.")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("shutting down ...")
    finally:
        cluster.shutdown()
    console.print("stopped.")


@app.command()
def render(
    prompt: Annotated[str, typer.Option(help="What to draw.")],
    out: Annotated[Path, typer.Option(help="Where to write the image (.png, .jpg, .webp).")],
    style: Annotated[str | None, typer.Option(help="Style label (routes to a model).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (wins over --style).")] = None,
    width: Annotated[int | None, typer.Option(help="Width in pixels.")] = None,
    height: Annotated[int | None, typer.Option(help="Height in pixels.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (chosen and printed if unset).")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    negative_prompt: Annotated[str, typer.Option(help="What to keep out.")] = "",
    init_image: Annotated[Path | None, typer.Option(help="Image to start from.")] = None,
    mask: Annotated[Path | None, typer.Option(help="Mask (white = repaint).")] = None,
    strength: Annotated[float, typer.Option(help="img2img / inpaint strength.")] = 0.75,
    url: UrlOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    gpus: Annotated[int, typer.Option(help="Logical GPUs of an embedded cluster.")] = 4,
) -> None:
    """Render one image through a running cluster (--url) or an embedded one."""
    import base64

    with one_line_errors():
        fmt = _format_of(out)
        body = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "style": style,
            "model": model,
            "width": width,
            "height": height,
            "seed": seed,
            "steps": steps,
            "strength": strength,
        }
        for name, path in (("init_image", init_image), ("mask", mask)):
            if path is not None:
                body[name] = base64.b64encode(path.read_bytes()).decode()
        body = {k: v for k, v in body.items() if v is not None}
        started = time.perf_counter()
        if url is None:
            from serve.local_cluster import start_local_cluster

            cluster = start_local_cluster(load_config(config), gpus=gpus, port=free_port())
            try:
                result = RenderClient(cluster.url).render(body, fmt)
            finally:
                cluster.shutdown()
        else:
            result = RenderClient(url).render(body, fmt)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(result.content)
    elapsed = time.perf_counter() - started
    console.print(
        f"wrote [bold]{out}[/] (render {result.render_id}, seed {result.seed}, {elapsed:.2f} s)"
    )


@app.command()
def status(
    url: Annotated[str, typer.Option(help="Cluster URL.")] = "http://127.0.0.1:8000",
) -> None:
    """Deployments, replicas (running / target) and requests in flight."""
    with one_line_errors():
        report = RenderClient(url).get("/v1/status")
    table = Table(title=f"{report['application']} ({report['status']})")
    for column in ("deployment", "model", "status", "replicas running/target", "in flight"):
        table.add_column(column)
    for row in report["deployments"]:
        table.add_row(
            row["name"],
            row["model"] or "-",
            row["status"],
            f"{row['replicas_running']}/{row['replicas_target']}",
            "-" if row["in_flight"] is None else str(row["in_flight"]),
        )
    console.print(table)


def _interrupt(signum: int, frame: object) -> None:
    """Treat SIGTERM like Ctrl-C so that `up` shuts down cleanly."""
    raise KeyboardInterrupt


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    formats = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
    if suffix not in formats:
        raise RequestError("out", f"extension .{suffix} is not one of .png, .jpg, .jpeg, .webp")
    return formats[suffix]
