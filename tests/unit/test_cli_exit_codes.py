"""The README documents every exit code the CLI uses, with the meaning the code gives it."""

from __future__ import annotations

import re
from pathlib import Path

from cli.exit_codes import ExitCode, for_http_status

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "any other failure",
    ExitCode.USAGE: "usage",
    ExitCode.NOT_FOUND: "not found",
    ExitCode.REJECTED: "rejected input",
    ExitCode.GATE_FAILED: "gate failed",
    ExitCode.OVERLOADED: "overloaded",
    ExitCode.SERVER_ERROR: "server error",
    ExitCode.UNREACHABLE: "unreachable",
    ExitCode.UNAUTHORIZED: "unauthorized",
    ExitCode.REGRESSED: "regressed",
}


def test_the_readme_table_lists_every_exit_code_with_its_meaning():
    table = {
        int(code): meaning.strip()
        for code, meaning in re.findall(r"^\| (\d+) \| ([^|:(]+)", README, re.M)
    }
    assert table == {int(code): meaning for code, meaning in MEANINGS.items()}


def test_http_statuses_map_to_their_codes():
    assert for_http_status(401) == for_http_status(403) == ExitCode.UNAUTHORIZED
    assert for_http_status(404) == ExitCode.NOT_FOUND
    assert for_http_status(422, "bad width") == for_http_status(409) == ExitCode.REJECTED
    gate = "text_boxes: contrast 2.1 < 4.5 (run 1 keeps the image for review)"
    assert for_http_status(422, gate) == ExitCode.GATE_FAILED
    assert for_http_status(429) == for_http_status(503) == ExitCode.OVERLOADED
    assert for_http_status(500) == for_http_status(502) == ExitCode.SERVER_ERROR
