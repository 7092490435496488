"""The README's CLI and curl examples work as written (against the shared cluster)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCUMENTED_URL = "http://127.0.0.1:8000"


def section_commands(heading: str) -> list[str]:
    """Shell commands of the first bash block under `heading` (continuations joined)."""
    section = README.split(f"## {heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


def run(command: str, cluster, cwd: Path) -> subprocess.CompletedProcess:
    command = command.replace(DOCUMENTED_URL, cluster.url)
    command = command.replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_curl_examples(cluster, tmp_path):
    commands = section_commands("The HTTP API")
    assert len(commands) == 8
    for command in commands:
        result = run(command.replace("curl -s", "curl -sf"), cluster, tmp_path)
        assert result.returncode == 0, (command, result.stderr)
        if "-o barn.png" in command:
            assert (tmp_path / "barn.png").read_bytes()[:4] == b"\x89PNG"
        else:
            assert isinstance(json.loads(result.stdout), dict), command


@pytest.mark.parametrize("index", range(1, 6))
def test_cli_examples(cluster, tmp_path_factory, index):
    commands = section_commands("The CLI")
    assert commands[0].startswith(".venv/bin/rendercluster up")  # blocks: run by hand
    workdir = tmp_path_factory.getbasetemp() / "readme-cli"
    workdir.mkdir(exist_ok=True)
    result = run(commands[index], cluster, workdir)
    assert result.returncode == 0, (commands[index], result.stdout, result.stderr)
    assert "error" not in result.stderr.lower()
