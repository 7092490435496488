"""`rendercluster eval` end to end over HTTP: the whole API served in-process by uvicorn,
two stand-in models (`oracle` draws the scenes world's ground truth, `flat` a grey
square), experiments stored per tenant, the PR gate, and the report in headless Chromium.
A pipeline case runs as a pipeline run, moved on by a stand-in supervisor thread.

Large-format cases need the job supervisor of a real cluster, so this suite leaves the
example's hires case out (tests/integration/test_experiments_serve.py runs it on Ray).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import StageJob, StageOutput
from cli.exit_codes import ExitCode
from cli.main import app
from core import tenants
from core.scenes import render
from core.schemas import GenerateRequest, GenerateResult
from core.tenants import TenantLimits, add_key
from serve.api_app import api
from tests.api.inprocess import config_for, flat_render, install
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "suites" / "scenes-small.yaml"
runner = CliRunner()


async def stand_in(model_name: str, request: GenerateRequest) -> GenerateResult:
    """`oracle`: the exact picture of a scenes prompt; any other model: flat grey."""
    if model_name != "oracle":
        return await flat_render(model_name, request)
    image = render(request.prompt, request.width, request.height)
    return GenerateResult(image, request.seed, 0.001, 1, "fake-replica", ["0"])


async def oracle_stage(job: StageJob) -> StageOutput:
    image = render(job.request.prompt, job.request.width, job.request.height)
    return StageOutput(image=image, timings={"compute_s": 0.001})


def advance_until(stop: threading.Event, runner: PipelineRunner, renders) -> None:
    """The job supervisor's part: move running pipeline runs on, as their tenant."""

    async def loop() -> None:
        while not stop.is_set():
            for run in runner.registry.list(status="running", limit=None):
                if run.pipeline is None or run.stage is not None:
                    continue
                tenants.current_tenant.set(run.owner)
                ended = await runner.advance(run.id)
                job = renders.jobs.jobs.find(run.id)
                if job is not None:
                    renders.jobs.jobs.save(job.model_copy(update={"status": ended.status}))
            await asyncio.sleep(0.1)

    asyncio.run(loop())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("experiments")
    keys = root / "keys.yaml"
    acme, rival = add_key(keys, "acme", TenantLimits()), add_key(keys, "rival", TenantLimits())
    models = {name: {"source": "tiny:0", "native_resolution": 128} for name in ("oracle", "flat")}
    pipelines = {
        "one": {"stages": [{"name": "base", "model": "oracle", "width": 128, "height": 128}]}
    }
    config = config_for(
        root / "store", {"keys_file": str(keys)}, models=models, pipelines=pipelines
    )
    suite = yaml.safe_load(EXAMPLE.read_text())
    suite["cases"] = [case for case in suite["cases"] if case.get("mode") != "hires"]
    suite["cases"].append(
        {"id": "piped", "prompt": "a blue circle on a red background", "pipeline": "one"}
    )
    for case in suite["cases"]:
        for name in ("init_image", "mask"):
            if name in case:
                case[name] = str(EXAMPLE.parent / case[name])
    (root / "suite.yaml").write_text(yaml.safe_dump(suite))
    with pytest.MonkeyPatch.context() as monkeypatch:
        renders = install(config, monkeypatch)
        renders.calls.models._model_render = stand_in
        runner = PipelineRunner(config, renders.store, oracle_stage, renders.registry)
        api.state.pipeline_runner = runner  # install() set it, and removes it at the end
        stop = threading.Event()
        supervisor = threading.Thread(target=advance_until, args=(stop, runner, renders))
        supervisor.start()
        try:
            with live_server(api) as url:
                yield {"url": url, "acme": acme, "rival": rival, "root": str(root)}
        finally:
            stop.set()
            supervisor.join(timeout=10)


def cli(cluster: dict[str, str], *args: str, tenant: str = "acme"):
    env = {"RENDERCLUSTER_URL": cluster["url"], "RENDERCLUSTER_API_KEY": cluster[tenant]}
    result = runner.invoke(app, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    return result


def evaluate(cluster: dict[str, str], *args: str):
    return cli(cluster, "eval", f"{cluster['root']}/suite.yaml", "--json", *args)


@pytest.fixture(scope="module")
def oracle(cluster) -> dict:
    result = evaluate(cluster, "--model", "oracle", "--report", f"{cluster['root']}/oracle.html")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_case_runs_through_the_api_and_is_measured(cluster, oracle):
    figures = oracle["summary"]["oracle"]
    assert figures["adherence"] == 1.0  # ground truth passes every clause of every case
    assert figures["gate_pass_rate"] == 1.0 and figures["cost_per_image"] == 0.0
    assert figures["layout_variance"] == 0.0 and figures["latency_s"] > 0
    record = json.loads(cli(cluster, "experiments", "show", oracle["id"], "--json").stdout)
    assert record["owner"] == "acme" and record["scorer"] == "scenes"
    pinned = {"source": "tiny:0", "revision": "tiny-seed0", "family": "sd"}
    assert record["models"] == [{"name": "oracle", **pinned}, {"name": "pipeline:one", **pinned}]
    samples = record["samples"]
    assert len(samples) == 10 and {s["case"] for s in samples} == {
        "one-object",
        "two-objects",
        "inpaint-right",
        "headline",
        "piped",
    }
    assert all(s["status"] == "done" and s["run_id"] for s in samples)
    assert oracle["summary"]["pipeline:one"]["adherence"] == 1.0
    headline = [s for s in samples if s["case"] == "headline"]
    assert all(s["gate_passed"] is True and s["width"] == 128 for s in headline)


def test_the_gate_fails_a_candidate_worse_than_its_baseline(cluster, oracle):
    drop = ("--baseline", oracle["id"], "--max-drop", "adherence=0.1")
    worse = evaluate(cluster, "--model", "flat", *drop, "--max-drop", "latency_s=60")
    assert worse.exit_code == ExitCode.REGRESSED, worse.output
    answer = json.loads(worse.stdout)
    assert answer["summary"]["flat"]["adherence"] < 0.2
    assert len(answer["regressions"]) == 1 and "adherence" in answer["regressions"][0]
    assert "the gate failed: flat adherence" in worse.stderr
    as_good = evaluate(cluster, "--model", "oracle", *drop)
    assert as_good.exit_code == 0, as_good.output
    diff = json.loads(
        cli(cluster, "experiments", "diff", oracle["id"], answer["id"], "--json").stdout
    )
    rows = [row for row in diff["metrics"] if row["metric"] == "adherence"]
    adherence = next(row for row in rows if row["model"] == "flat")
    assert diff["same_suite"] and adherence["drop"] > 0.8
    listed = json.loads(cli(cluster, "experiments", "list", "--json").stdout)["experiments"]
    assert {oracle["id"], answer["id"]} <= {e["id"] for e in listed}
    out = f"{cluster['root']}/flat.html"
    written = cli(cluster, "experiments", "report", answer["id"], "--out", out, "--json")
    assert json.loads(written.stdout)["out"] == out
    assert "dropped" in Path(out).read_text()  # the regression, on the report


def test_two_models_side_by_side(cluster, tmp_path):
    out = tmp_path / "both.html"
    both = evaluate(cluster, "--model", "oracle", "--model", "flat", "--report", str(out))
    assert both.exit_code == 0, both.output
    summary = json.loads(both.stdout)["summary"]
    assert summary["oracle"]["adherence"] > summary["flat"]["adherence"]
    html = out.read_text()
    assert html.count('<tr class="case">') == 5 and html.count("data:image/png;base64,") == 18


def test_a_bad_suite_is_one_line_naming_the_field(cluster, tmp_path):
    cases = [
        ({"name": "x", "cases": [{"id": "a"}]}, "cases.0.prompt: Field required"),
        ({"name": "x", "metrics": ["beauty"], "cases": [{"id": "a", "prompt": "p"}]}, "metrics.0"),
        ({"name": "x", "cases": [{"id": "a", "prompt": "p", "mask": "m.png"}]}, "mask needs"),
        (
            {"name": "x", "adherence": {"scorer": "clip"}, "cases": [{"id": "a", "prompt": "p"}]},
            "no scorer 'clip' (known: scenes)",
        ),
    ]
    for suite, words in cases:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(suite))
        result = cli(cluster, "eval", str(path), "--model", "oracle")
        assert result.exit_code in (ExitCode.USAGE, ExitCode.REJECTED), result.output
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert cli(cluster, "eval", str(tmp_path / "none.yaml"), "-m", "x").exit_code == 3


def test_another_tenant_sees_no_experiment_and_cannot_borrow_runs(cluster, oracle):
    missing = cli(cluster, "experiments", "show", oracle["id"], tenant="rival")
    assert missing.exit_code == ExitCode.NOT_FOUND
    listed = json.loads(cli(cluster, "experiments", "list", "--json", tenant="rival").stdout)
    assert listed["experiments"] == []
    record = json.loads(cli(cluster, "experiments", "show", oracle["id"], "--json").stdout)
    headers = {"Authorization": f"Bearer {cluster['rival']}"}
    answer = httpx.post(f"{cluster['url']}/v1/experiments", json=record, headers=headers)
    assert answer.status_code == 422 and "samples.0.run_id" in answer.text
    record["samples"] = []  # no runs named: stored, under an id of the server's own
    answer = httpx.post(f"{cluster['url']}/v1/experiments", json=record, headers=headers)
    assert answer.status_code == 201 and answer.json()["id"] != oracle["id"]
    assert answer.json()["owner"] == "rival"
    report = httpx.get(f"{cluster['url']}/v1/experiments/{oracle['id']}/report", headers=headers)
    assert report.status_code == 404


def test_the_board_links_each_report(cluster, oracle):
    with httpx.Client(base_url=cluster["url"]) as board:
        form = board.get("/ui/login").text
        token = form.split('name="csrf" value="')[1].split('"')[0]
        board.post("/ui/login", data={"api_key": cluster["acme"], "csrf": token})
        listing = board.get("/ui/experiments").text
        assert f"/ui/experiments/{oracle['id']}" in listing
        report = board.get(f"/ui/experiments/{oracle['id']}")
        assert report.status_code == 200 and "Experiment" in report.text


def test_the_report_in_headless_chromium(cluster, oracle):
    from tests.ui.chromium import chromium_driver, skip_without_chromium

    skip_without_chromium()
    from selenium.webdriver.common.by import By

    with chromium_driver() as browser:
        browser.get(f"file://{cluster['root']}/oracle.html")
        images = browser.find_elements(By.CSS_SELECTOR, "#cases img")
        assert len(images) == 10
        assert all(browser.execute_script("return arguments[0].naturalWidth", i) for i in images)
        assert "oracle" in browser.find_element(By.CSS_SELECTOR, "#models").text
        bars = browser.find_elements(By.CSS_SELECTOR, "#figures svg rect.bar")
        assert len(bars) >= 5
