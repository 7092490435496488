"""The runs / pipeline / approval CLI: `--set` parsing and one-line errors without a server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from cli.exit_codes import ExitCode
from cli.main import app
from cli.runs import parse_settings
from core.errors import RequestError

runner = CliRunner()
RUN_ID = "20250101-120000-000000-1a2b3c4d"
COMMANDS = [
    ["runs", "list", "--pipeline", "standard"],
    ["runs", "show", RUN_ID],
    ["runs", "diff", RUN_ID, RUN_ID],
    ["pipeline", "list"],
    ["pipeline", "run", "standard", "--prompt", "a poster"],
    ["pipeline", "show", RUN_ID],
    ["approve", RUN_ID],
    ["reject", RUN_ID, "--reason", "too dark"],
    ["rerun", RUN_ID, "--stage", "final", "--set", "steps=40"],
    ["variance", "--prompt", "a poster", "--model", "fast", "--n", "2"],
]


def test_set_values_are_json_or_text():
    settings = parse_settings(["steps=40", "strength=0.5", "model=fast", "note=a=b", "seed=null"])
    assert settings == {"steps": 40, "strength": 0.5, "model": "fast", "note": "a=b", "seed": None}
    assert parse_settings(['approval="required"', "flag=true"]) == {
        "approval": "required",
        "flag": True,
    }


@pytest.mark.parametrize("item", ["steps", "=40", ""])
def test_set_without_a_key_and_value_is_refused(item):
    with pytest.raises(RequestError, match="KEY=VALUE"):
        parse_settings([item])


def test_bad_set_is_one_line_before_any_request():
    result = runner.invoke(app, ["rerun", RUN_ID, "--stage", "final", "--set", "steps"])
    assert result.exit_code == ExitCode.REJECTED
    assert result.output.strip() == "error: set: expected KEY=VALUE, got 'steps'"


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_no_server_is_one_line_and_exit_8(command, closed_url):
    result = runner.invoke(app, [*command, "--url", closed_url])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert (
        result.output.strip()
        == f"error: cannot reach render-cluster at {closed_url} (connection refused)"
    )


class _NotFound(BaseHTTPRequestHandler):
    """Answers every request like the API does for an unknown run."""

    def _answer(self) -> None:
        body = json.dumps({"error": {"field": "id", "message": f"id: no run {RUN_ID!r}"}})
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_found_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command", [["runs", "show", RUN_ID], ["approve", RUN_ID]])
def test_api_errors_are_one_line_and_exit_3(command, not_found_url):
    result = runner.invoke(app, [*command, "--url", not_found_url])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert result.output.strip() == f"error: HTTP 404: id: no run {RUN_ID!r}"
