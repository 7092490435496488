"""Turn expected failures into one readable line and a non-zero exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from core.errors import RenderClusterError

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Print `error: ...` on stderr and exit 1 instead of a traceback.

    A config error lists every problem, one per line, under that first line.
    """
    try:
        yield
    except (RenderClusterError, OSError) as exc:
        stderr.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
