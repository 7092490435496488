"""`rendercluster eval` (run a suite, store the experiment, gate on a baseline) and
`rendercluster experiments list|show|diff|report`, all over the cluster's HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cli.assets import default_config
from cli.client import RenderClient
from cli.embedded import cluster_url
from cli.errors import fail, one_line_errors, stderr
from cli.eval_runner import run_suite
from cli.exit_codes import ExitCode
from cli.options import DEFAULT_URL, JsonOption, OptionalUrlOption, UrlOption, emit
from core.errors import RequestError
from core.experiments.gate import parse_max_drops, regressions
from core.experiments.record import ExperimentRecord, Sample
from core.experiments.scorers import make_scorer
from core.experiments.suite import load_suite

__all__ = ["evaluate", "experiments_app"]

console = Console(highlight=False)
DEFAULT_CONFIG = default_config()
experiments_app = typer.Typer(
    help="Experiment records: list, show, diff, report.", no_args_is_help=True
)


def _summary_table(record: dict[str, Any], title: str) -> Table:
    metrics = list(dict.fromkeys(m for s in record["summary"].values() for m in s))
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("model", "source", *metrics):
        table.add_column(column, no_wrap=True)
    for model in record["models"]:
        figures = record["summary"].get(model["name"], {})
        cells = [f"{figures[m]:.4g}" if m in figures else "-" for m in metrics]
        table.add_row(model["name"], model.get("source") or "-", *cells)
    return table


def _progress(sample: Sample) -> None:
    score = "" if sample.adherence is None else f", adherence {sample.adherence:.2f}"
    stderr.print(
        f"{sample.case} / {sample.model} / seed {sample.seed}: {sample.status} "
        f"({sample.latency_s:.2f} s{score})"
    )


def evaluate(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML (cases, seeds, metrics).")],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model to judge (repeat for several).")
    ],
    baseline: Annotated[
        str | None, typer.Option(help="Experiment id to compare against (the PR gate).")
    ] = None,
    max_drop: Annotated[
        list[str] | None,
        typer.Option(help="METRIC=VALUE: fail (exit 10) if METRIC drops more (repeatable)."),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Also write the HTML report here.")] = None,
    url: OptionalUrlOption = None,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Config of an embedded cluster.")
    ] = DEFAULT_CONFIG,
    gpus: Annotated[int, typer.Option(help="Logical GPUs of an embedded cluster.")] = 4,
    as_json: JsonOption = False,
) -> None:
    """Run every case of a suite on each model through the cluster; store the experiment."""
    with one_line_errors(as_json):
        suite, digest = load_suite(suite_file)
        drops = parse_max_drops(max_drop or [])
        if drops and baseline is None:
            raise RequestError("max-drop", "needs --baseline EXPERIMENT to compare against")
        scorer = make_scorer(suite.adherence.scorer, suite.adherence.options)
        with cluster_url(url, config, gpus) as base:
            client = RenderClient(base)
            old = None
            if baseline is not None:
                old = ExperimentRecord.model_validate(client.get(f"/v1/experiments/{baseline}"))
            record, _ = run_suite(client, suite, digest, model, scorer, _progress)
            if old is not None:
                found = regressions(old, record, drops)
                record = record.model_copy(update={"baseline": old.id, "regressions": found})
            saved = client.post("/v1/experiments", record.model_dump(mode="json"))
            if report is not None:
                report.parent.mkdir(parents=True, exist_ok=True)
                report.write_bytes(client.fetch(saved["report_url"]))
    result = {**saved, "summary": record.summary, "regressions": record.regressions}
    if as_json:
        emit(result)
    else:
        console.print(_summary_table(record.model_dump(mode="json"), f"experiment {saved['id']}"))
        console.print(f"report: {saved['report_url']}")
    if record.regressions:
        lines = "; ".join(record.regressions)
        raise fail(f"the gate failed: {lines}", ExitCode.REGRESSED)


@experiments_app.command("list")
def list_experiments(
    suite: Annotated[str | None, typer.Option(help="Only this suite.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1)] = 50,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """The experiments you ran, newest first."""
    params = {"limit": limit, **({"suite": suite} if suite else {})}
    with one_line_errors(as_json):
        found = RenderClient(url).get("/v1/experiments", **params)["experiments"]
    if as_json:
        return emit({"experiments": found})
    table = Table(title=f"{len(found)} experiments", box=box.SIMPLE_HEAD)
    for column in ("id", "suite", "models", "adherence"):
        table.add_column(column, no_wrap=True)
    for item in found:
        adherence = [
            f"{name} {figures['adherence']:.3f}"
            for name, figures in item["summary"].items()
            if "adherence" in figures
        ]
        names = ", ".join(m["name"] for m in item["models"])
        table.add_row(item["id"], item["suite"], names, ", ".join(adherence) or "-")
    console.print(table)


@experiments_app.command("show")
def show_experiment(
    experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """One experiment: its models' figures (`--json`: the whole record, every sample)."""
    with one_line_errors(as_json):
        record = RenderClient(url).get(f"/v1/experiments/{experiment_id}")
    if as_json:
        return emit(record)
    console.print(_summary_table(record, f"experiment {record['id']} ({record['suite']})"))
    for line in record["regressions"]:
        console.print(f"[red]regression:[/] {line}")


@experiments_app.command("diff")
def diff_experiments(
    baseline: Annotated[str, typer.Argument(help="Baseline experiment id.")],
    candidate: Annotated[str, typer.Argument(help="Candidate experiment id.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Each metric of each model in both experiments, and how far it dropped (> 0: worse)."""
    with one_line_errors(as_json):
        diff = RenderClient(url).get(f"/v1/experiments/{baseline}/diff/{candidate}")
    if as_json:
        return emit(diff)
    table = Table(title=f"{baseline} -> {candidate}", box=box.SIMPLE_HEAD)
    for column in ("model", "metric", "baseline", "candidate", "drop"):
        table.add_column(column, no_wrap=True)
    for row in diff["metrics"]:
        cells = [row[k] for k in ("baseline", "value", "drop")]
        shown = ["-" if v is None else f"{v:.4g}" for v in cells]
        table.add_row(row["model"], row["metric"], *shown)
    if not diff["same_suite"]:
        table.caption = "the two ran different suites (or inputs)"
    console.print(table)


@experiments_app.command("report")
def write_report(
    experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Write an experiment's HTML report (models side by side, case by case)."""
    with one_line_errors(as_json):
        client = RenderClient(url)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(client.fetch(f"{client.url}/v1/experiments/{experiment_id}/report"))
    if as_json:
        return emit({"id": experiment_id, "out": str(out)})
    console.print(f"wrote [bold]{out}[/]")
