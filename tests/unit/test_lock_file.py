"""requirements.lock pins the whole tree, and agrees with every pin of pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)$")


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        assert match, f"not an exact pin: {line!r}"
        pins[_name(match.group(1))] = match.group(3)
    return pins


def test_every_pin_of_pyproject_is_in_the_lock_at_its_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    lock = _lock()
    for requirement in wanted:
        match = _PIN.match(requirement)
        assert match, f"pyproject pins exactly: {requirement!r}"
        assert lock.get(_name(match.group(1))) == match.group(3), requirement
    assert len(lock) > len(wanted)  # and what they need in turn
