"""Weights checked against the content digest a source pins (`<source>@sha256:<hex>`).

A local source is read where it is; an `s3://` source is checked on the node's
copy, and a copy that no longer matches (the prefix was overwritten since this
node copied it) is dropped and copied again once. Weights that still differ
from the pin are refused, so every replica of a pinned model serves the same bytes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from core.errors import ModelLoadError
from core.weights_digest import weights_digest

__all__ = ["pinned_s3_copy", "verified"]

CopyS3 = Callable[[str, Path], Path]


def verified(path: Path, pin: str | None, source: str) -> Path:
    """`path` when its files have the digest `pin` (None: unpinned, not read)."""
    if pin is None:
        return path
    try:
        found = weights_digest(path)
    except FileNotFoundError:
        raise ModelLoadError(f"{source}: no weights to check against its pin") from None
    if found != pin:
        raise ModelLoadError(
            f"{source}: the weights there are {found}, not the pinned {pin} "
            "(pin what you mean to serve: `rendercluster models digest <path>`)"
        )
    return path


def pinned_s3_copy(location: str, pin: str | None, cache_dir: Path, copy: CopyS3) -> Path:
    """This node's copy of `s3://` `location`, checked against `pin`."""
    path = copy(location, cache_dir)
    if pin is None or weights_digest(path) == pin:
        return path
    shutil.rmtree(path)  # copied before the prefix changed: copy what is there now
    return verified(copy(location, cache_dir), pin, f"{location}@{pin}")
