"""The CLI for scripts: `--json` on every command, URL and key from the environment,
one exit code per kind of failure (README "Exit codes"), never a traceback.

The commands talk over HTTP to the whole API served in-process by uvicorn on
127.0.0.1 (models faked: a prompt containing "overload" or "crash" fails the way
a full model or a broken server does).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from cli import main as cli_main
from cli.exit_codes import ExitCode
from cli.main import app
from core.errors import OverloadedError
from core.schemas import GenerateRequest, GenerateResult
from core.tenants import TenantLimits, add_key
from serve.api_app import api
from tests.api.inprocess import config_for, flat_render, install
from tests.live_server import free_port, live_server

runner = CliRunner()


async def moody_render(model_name: str, request: GenerateRequest) -> GenerateResult:
    """A flat image, unless the prompt asks for an overloaded model or a crash."""
    if "overload" in request.prompt:
        raise OverloadedError(model_name)
    if "crash" in request.prompt:
        raise RuntimeError("the replica fell over")
    return await flat_render(model_name, request)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The API on a free port with one tenant's key; yields url and key."""
    root = tmp_path_factory.mktemp("cli")
    key = add_key(root / "keys.yaml", "acme", TenantLimits())
    config = config_for(
        root / "store",
        {"keys_file": str(root / "keys.yaml")},
        models={"tiny": {"source": "tiny:0", "native_resolution": 256}},
        typography={"gate": {"min_contrast": 21}},  # every text box fails the gate
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        renders = install(config, monkeypatch)
        renders.calls.models._model_render = moody_render
        with live_server(api) as url:
            yield {"url": url, "key": key, "root": str(root)}


def cli(cluster: dict[str, str], *args: str, key: bool = True, url: bool = True):
    """Run `rendercluster ARGS` with the URL and key in the environment."""
    env = {"RENDERCLUSTER_URL": cluster["url"] if url else None}
    env["RENDERCLUSTER_API_KEY"] = cluster["key"] if key else None
    result = runner.invoke(app, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    return result


def rendered(cluster: dict[str, str], tmp_path) -> dict:
    out = tmp_path / "a.png"
    result = cli(
        cluster, "render", "--prompt", "a kite", "--out", str(out), "--seed", "3", "--json"
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_render_json_names_the_run_and_the_file(cluster, tmp_path):
    view = rendered(cluster, tmp_path)
    assert view["seed"] == 3 and view["out"].endswith("a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_every_command_with_json_prints_json(cluster, tmp_path):
    run_id = rendered(cluster, tmp_path)["id"]
    other = rendered(cluster, tmp_path)["id"]
    keys = str(tmp_path / "keys.yaml")
    commands = [
        ["status"],
        ["runs", "list"],
        ["runs", "show", run_id],
        ["runs", "diff", run_id, other],
        ["pipeline", "list"],
        ["pipeline", "show", run_id],
        ["pipeline", "run", "two", "--prompt", "x", "--no-wait"],
        ["approve", run_id],
        ["reject", run_id],
        ["rerun", run_id, "--stage", "base", "--no-wait"],
        ["variance", "--prompt", "a kite", "--model", "tiny", "--n", "2"],
        ["jobs", "list"],
        ["jobs", "show", "nope"],
        ["jobs", "cancel", "nope"],
        ["jobs", "wait", "nope"],
        ["campaign", "status", "nope"],
        ["keys", "add", "--tenant", "acme", "--keys-file", keys],
        ["keys", "list", "--keys-file", keys],
        ["upscale", str(tmp_path / "a.png"), "--out", str(tmp_path / "b.png")],
    ]
    for command in commands:
        result = cli(cluster, *command, "--json")
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            pytest.fail(f"{command}: not JSON (exit {result.exit_code}): {result.stdout!r}")
        assert isinstance(answer, dict), command
        if result.exit_code:  # a failure under --json is an error object with its code
            assert answer["error"]["exit_code"] == result.exit_code, command


def test_the_key_comes_from_the_environment_or_api_key(cluster):
    assert cli(cluster, "runs", "list", "--json").exit_code == 0
    refused = cli(cluster, "runs", "list", key=False)
    assert refused.exit_code == ExitCode.UNAUTHORIZED, refused.output
    given = runner.invoke(
        app, ["--api-key", cluster["key"], "runs", "list", "--url", cluster["url"], "--json"]
    )
    assert given.exit_code == 0, given.output


def test_the_url_comes_from_the_environment(cluster):
    result = cli(cluster, "runs", "list", "--json", url=False)
    assert result.exit_code == ExitCode.UNREACHABLE  # the default 127.0.0.1:8000
    assert cli(cluster, "runs", "list", "--json").exit_code == 0


@pytest.mark.parametrize(
    ("code", "args"),
    [
        (ExitCode.USAGE, ["render", "--prompt", "x"]),  # --out is required
        (ExitCode.USAGE, ["render", "--prompt", "x", "--out", "a.png", "--steps", "many"]),
        (ExitCode.NOT_FOUND, ["runs", "show", "20260101-000000-000000-0000abcd"]),
        (
            ExitCode.NOT_FOUND,
            [
                "render",
                "--prompt",
                "x",
                "--out",
                "{tmp}/a.png",
                "--init-image",
                "{tmp}/missing.png",
            ],
        ),
        (ExitCode.REJECTED, ["render", "--prompt", "x", "--out", "{tmp}/a.png", "--width", "7"]),
        (ExitCode.REJECTED, ["render", "--prompt", "x", "--out", "{tmp}/a.bmp"]),
        (
            ExitCode.GATE_FAILED,
            [
                "render",
                "--prompt",
                "a poster",
                "--out",
                "{tmp}/a.png",
                "--text-boxes",
                "{tmp}/boxes.json",
            ],
        ),
        (ExitCode.OVERLOADED, ["render", "--prompt", "overload", "--out", "{tmp}/a.png"]),
        (ExitCode.SERVER_ERROR, ["render", "--prompt", "crash", "--out", "{tmp}/a.png"]),
    ],
    ids=lambda value: value.name.lower() if isinstance(value, ExitCode) else None,
)
def test_each_exit_code_is_produced_by_the_case_it_names(cluster, tmp_path, code, args):
    box = {"copy": "SALE", "anchor": {"x": 0.1, "y": 0.6, "w": 0.8, "h": 0.3}}
    (tmp_path / "boxes.json").write_text(json.dumps([box]))
    args = [arg.format(tmp=tmp_path) for arg in args]
    result = cli(cluster, *args)
    assert result.exit_code == code, result.output
    assert code == ExitCode.USAGE or result.stderr.startswith("error: "), result.stderr
    as_json = cli(cluster, *args, "--json")
    if code != ExitCode.USAGE:  # click refuses the command line before any output
        assert json.loads(as_json.stdout)["error"]["exit_code"] == code


def test_an_unreachable_cluster_is_its_own_code():
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["runs", "list", "--url", url])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert (
        result.stderr.strip() == f"error: cannot reach render-cluster at {url} (connection refused)"
    )


def test_an_unexpected_error_is_one_line_and_exit_1(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(cli_main.Table, "add_column", broken)
    monkeypatch.setattr(sys, "argv", ["rendercluster", "status", "--url", "http://127.0.0.1:1"])
    monkeypatch.setattr(
        cli_main.RenderClient,
        "get",
        lambda self, path: {"application": "x", "status": "RUNNING", "deployments": []},
    )
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == ExitCode.ERROR
    err = capsys.readouterr().err
    assert err.strip() == "error: unexpected KeyError" and "Traceback" not in err
