"""Options every command shares: the cluster's URL, `--json`, and how JSON is printed."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

__all__ = ["DEFAULT_URL", "JsonOption", "OptionalUrlOption", "UrlOption", "URL_ENV", "emit"]

URL_ENV = "RENDERCLUSTER_URL"
DEFAULT_URL = "http://127.0.0.1:8000"

UrlOption = Annotated[
    str, typer.Option("--url", envvar=URL_ENV, help="Cluster URL (or $RENDERCLUSTER_URL).")
]
OptionalUrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar=URL_ENV,
        help="A running cluster's URL (or $RENDERCLUSTER_URL); without it an embedded one starts.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON document (for scripts).")
]


def emit(data: Any) -> None:
    """Print `data` as JSON on stdout, unwrapped, whatever the terminal's width."""
    print(json.dumps(data, default=str))
