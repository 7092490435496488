"""The content digest that pins a local or `s3://` model source (`<source>@sha256:<hex>`).

A directory's digest covers every regular file under it (hidden ones aside, such
as the copy-complete marker): its path relative to the directory, its size and
the sha256 of its bytes, in path order. A single file's covers its name and
bytes the same way; an ncnn `.param` file's covers it and the `.bin` beside it (the
network's graph and its weights make one model). File times and the directory's own
path do not count, so a copy on another node, or the same files uploaded to S3 and
copied back, has the same digest.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = ["PIN_PATTERN", "split_pin", "weights_digest"]

PIN_PATTERN = re.compile(r"^(?P<location>.+)@(?P<pin>sha256:[0-9a-f]{64})$")
CHUNK = 8 * 1024 * 1024


def split_pin(source: str) -> tuple[str, str | None]:
    """`source` without its `@sha256:<hex>` pin, and the pin (None when unpinned)."""
    match = PIN_PATTERN.match(source)
    return (source, None) if match is None else (match["location"], match["pin"])


def weights_digest(path: Path, pattern: str = "*") -> str:
    """`sha256:<hex>` of the files at `path` (a directory or one file); in a directory, of
    those whose names match `pattern`. Reads every byte."""
    if path.is_file():
        files = [(found.name, found) for found in _model_files(path)]
    else:
        files = sorted(
            (found.relative_to(path).as_posix(), found)
            for found in path.rglob(pattern)
            if found.is_file() and not _hidden(found.relative_to(path))
        )
    if not files:
        raise FileNotFoundError(f"no files under {path}")
    outer = hashlib.sha256()
    for name, found in files:
        outer.update(f"{name}\0{found.stat().st_size}\0{_file_sha256(found)}\n".encode())
    return f"sha256:{outer.hexdigest()}"


def _model_files(path: Path) -> list[Path]:
    """The files one weights file stands for: a `.param` file and its `.bin`, else itself."""
    weights = path.with_suffix(".bin")
    if path.suffix == ".param" and weights.is_file():
        return [path, weights]
    return [path]


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
