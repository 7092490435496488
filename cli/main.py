"""`rendercluster`: run a local cluster, render through it, and inspect it."""

from __future__ import annotations

import base64
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.assets import default_config
from cli.campaign import campaign_app
from cli.client import API_KEY_ENV, RenderClient, api_key_option
from cli.embedded import cluster_url
from cli.errors import exit_code_of, fail, one_line_errors, stderr
from cli.experiments import evaluate, experiments_app
from cli.init_cmd import init
from cli.jobs import describe, download, follow_job
from cli.jobs_app import jobs_app
from cli.k8s import app as k8s_app
from cli.keys import keys_app
from cli.models import models_app
from cli.options import DEFAULT_URL, JsonOption, OptionalUrlOption, UrlOption, emit
from cli.runs import pipeline_app, register, runs_app
from cli.text_boxes import TextBoxesOption, read_text_boxes
from core.config_file import load_config
from core.errors import RequestError

app = typer.Typer(
    help="render-cluster: distributed diffusion rendering on Ray Serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(k8s_app, name="k8s")
app.add_typer(runs_app, name="runs")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(campaign_app, name="campaign")
app.add_typer(jobs_app, name="jobs")
app.add_typer(keys_app, name="keys")
app.add_typer(experiments_app, name="experiments")
app.add_typer(models_app, name="models")
app.command("init")(init)
console = Console(highlight=False)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Cluster config YAML.", show_default=True)
]
DEFAULT_CONFIG = default_config()


@app.callback()
def _options(
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=API_KEY_ENV,
            help="API key sent as a Bearer token (or $RENDERCLUSTER_API_KEY).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Options for every command (exit codes: see README, "Exit codes")."""
    api_key_option.set(api_key)


def main() -> None:
    """The `rendercluster` command: any error is one line and its exit code, no traceback."""
    try:
        app()
    except Exception as exc:  # an error no command turned into its line
        code = fail(f"unexpected {type(exc).__name__}", exit_code_of(exc)).exit_code
        raise SystemExit(code) from None


@app.command()
def up(
    config: ConfigOption = DEFAULT_CONFIG,
    gpus: Annotated[int, typer.Option(help="Logical GPUs to give Ray.", min=0)] = 4,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: from config).")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve the rendercluster_* metrics on 127.0.0.1:N/metrics.", min=1),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line once up (url, startup_s).")
    ] = False,
) -> None:
    """Start Ray with logical GPUs and the Serve app; run until Ctrl-C."""
    from serve.local_cluster import start_local_cluster

    with one_line_errors(as_json):
        cluster_config = load_config(config)
        cluster = start_local_cluster(
            cluster_config, gpus=gpus, port=port, metrics_port=metrics_port
        )
    metrics_url = cluster.metrics.url if cluster.metrics is not None else None
    if as_json:
        emit({"url": cluster.url, "startup_s": round(cluster.startup_s, 2), "metrics": metrics_url})
        sys.stdout.flush()
    else:
        console.print(f"render-cluster is up at [bold]{cluster.url}[/] ({cluster.startup_s:.1f} s)")
        if metrics_url is not None:
            console.print(f"metrics: {metrics_url}")
        console.print("Ctrl-C stops it.")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        stderr.print("shutting down ...")
    finally:
        cluster.shutdown()
    stderr.print("stopped.")


@app.command()
def render(
    prompt: Annotated[str, typer.Option(help="What to draw.")],
    out: Annotated[Path, typer.Option(help="Output file (.png, .jpg, .webp, .tif).")],
    style: Annotated[str | None, typer.Option(help="Style label (routes to a model).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (wins over --style).")] = None,
    width: Annotated[int | None, typer.Option(help="Width in pixels.")] = None,
    height: Annotated[int | None, typer.Option(help="Height in pixels.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (chosen and printed if unset).")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    negative_prompt: Annotated[str, typer.Option(help="What to keep out.")] = "",
    init_image: Annotated[Path | None, typer.Option(help="Image to start from.")] = None,
    mask: Annotated[Path | None, typer.Option(help="Mask (white = repaint).")] = None,
    strength: Annotated[float | None, typer.Option(help="img2img / refine strength.")] = None,
    mode: Annotated[str, typer.Option(help="auto, single, hires or tiled.")] = "auto",
    dpi: Annotated[int, typer.Option(help="DPI written into the file.")] = 300,
    text_boxes: TextBoxesOption = None,
    url: OptionalUrlOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    gpus: Annotated[int, typer.Option(help="Logical GPUs of an embedded cluster.")] = 4,
    as_json: JsonOption = False,
) -> None:
    """Render through a running cluster (--url) or an embedded one; large sizes are tiled."""
    with one_line_errors(as_json):
        body = {
            "text_boxes": read_text_boxes(text_boxes) or None,
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "style": style,
            "model": model,
            "width": width,
            "height": height,
            "seed": seed,
            "steps": steps,
            "strength": strength,
            "mode": mode,
            "dpi": dpi,
            "format": _format_of(out),
        }
        for name, path in (("init_image", init_image), ("mask", mask)):
            if path is not None:
                body[name] = base64.b64encode(path.read_bytes()).decode()
        body = {k: v for k, v in body.items() if v is not None}
        started = time.perf_counter()
        with cluster_url(url, config, gpus) as base:
            client = RenderClient(base)
            view = client.post("/v1/renders", {**body, "wait": False})
            if "image_base64" in view:  # a single render answers at once
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(base64.b64decode(view.pop("image_base64")))
                line = (
                    f"wrote [bold]{out}[/] (render {view['id']}, model {view['model']}, "
                    f"seed {view['seed']}, {time.perf_counter() - started:.2f} s)"
                )
            else:
                view = follow_job(client, view, console, quiet=as_json)
                download(client, view, out)
                line = describe(view, out, time.perf_counter() - started)
    if as_json:
        return emit(view | {"out": str(out), "seconds": round(time.perf_counter() - started, 3)})
    console.print(line)


@app.command()
def upscale(
    image: Annotated[Path, typer.Argument(help="Image to upscale (PNG, JPEG, WebP).")],
    out: Annotated[Path, typer.Option(help="Output file (.png, .jpg, .tif).")],
    scale: Annotated[int, typer.Option(help="Total scale (the model's, or a power of it).")] = 4,
    model: Annotated[str | None, typer.Option(help="Upscaler model name.")] = None,
    dpi: Annotated[int, typer.Option(help="DPI written into the file.")] = 300,
    url: OptionalUrlOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    gpus: Annotated[int, typer.Option(help="Logical GPUs of an embedded cluster.")] = 4,
    as_json: JsonOption = False,
) -> None:
    """Make an image larger with a tiled upscaler model across its replicas."""
    with one_line_errors(as_json):
        body = {
            "image": base64.b64encode(image.read_bytes()).decode(),
            "scale": scale,
            "model": model,
            "dpi": dpi,
            "format": _format_of(out),
            "wait": False,
        }
        started = time.perf_counter()
        with cluster_url(url, config, gpus) as base:
            client = RenderClient(base)
            view = follow_job(client, client.post("/v1/upscale", body), console, quiet=as_json)
            download(client, view, out)
    if as_json:
        return emit(view | {"out": str(out), "seconds": round(time.perf_counter() - started, 3)})
    console.print(describe(view, out, time.perf_counter() - started))


@app.command()
def status(url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Deployments, replicas (running / target) and requests in flight."""
    with one_line_errors(as_json):
        report = RenderClient(url).get("/v1/status")
    if as_json:
        return emit(report)
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
    formats = {
        "png": "png",
        "jpg": "jpeg",
        "jpeg": "jpeg",
        "webp": "webp",
        "tif": "tiff",
        "tiff": "tiff",
    }
    if suffix not in formats:
        raise RequestError("out", f"extension .{suffix} is not one of .{', .'.join(formats)}")
    return formats[suffix]


@app.command()
def demo(
    config: ConfigOption = DEFAULT_CONFIG,
    out_dir: Annotated[Path, typer.Option(help="Where the outputs go.")] = Path("out/demo"),
    width: Annotated[int, typer.Option(help="Width of the billboard render.")] = 4096,
    height: Annotated[int, typer.Option(help="Height of the billboard render.")] = 1024,
    gpus: Annotated[int, typer.Option(help="Logical GPUs of the embedded cluster.")] = 4,
    as_json: JsonOption = False,
) -> None:
    """Start an embedded cluster and run the demo jobs (real-photo upscale, billboard render)."""
    from cli.demo import run_demo

    shown = stderr if as_json else console  # with --json, stdout holds only the JSON
    with one_line_errors(as_json):
        started = time.perf_counter()
        with cluster_url(None, config, gpus) as url:
            shown.print(f"embedded cluster up at {url} ({time.perf_counter() - started:.1f} s)")
            produced = run_demo(url, out_dir, width, height, shown)
    if as_json:
        emit({**produced, "total_s": round(time.perf_counter() - started, 2)})
        return
    console.print(f"done in {time.perf_counter() - started:.1f} s; outputs in [bold]{out_dir}[/]")


register(app)  # approve, reject, rerun, variance (after the core commands in --help)
app.command("eval")(evaluate)  # the experiment suite (issue 18)
