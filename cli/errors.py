"""Turn every failure into one readable line and the exit code that names it.

No command prints a traceback: expected failures say what to fix, anything
else says which kind of error it was (`cli.exit_codes` lists the codes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from cli.client import ClientError
from cli.exit_codes import ExitCode
from core.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    OverloadedError,
    QuotaExceeded,
    RenderClusterError,
    RequestError,
    TypographyGateFailed,
)
from core.redact import public_message

__all__ = ["exit_code_of", "fail", "one_line_errors", "stderr"]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def exit_code_of(exc: BaseException) -> ExitCode:
    """The exit code that names the kind of `exc`."""
    kinds: list[tuple[type[BaseException], ExitCode]] = [
        (ClientError, ExitCode.ERROR),  # replaced by its own code below
        (TypographyGateFailed, ExitCode.GATE_FAILED),
        (NotFoundError, ExitCode.NOT_FOUND),
        (RequestError, ExitCode.REJECTED),
        (ConfigError, ExitCode.USAGE),
        (AuthError, ExitCode.UNAUTHORIZED),
        (OverloadedError | QuotaExceeded, ExitCode.OVERLOADED),
        (FileNotFoundError, ExitCode.NOT_FOUND),
    ]
    if isinstance(exc, ClientError):
        return exc.exit_code
    for kind, code in kinds:
        if isinstance(exc, kind):
            return code
    return ExitCode.ERROR


def fail(message: str, code: ExitCode, as_json: bool = False) -> typer.Exit:
    """Print `error: message` on stderr (and, with `--json`, the error as JSON on stdout);
    the `typer.Exit` to raise."""
    stderr.print(f"[red]error:[/] {escape(message)}")
    if as_json:
        print(
            json.dumps(
                {"error": {"message": message, "exit_code": int(code), "kind": code.name.lower()}}
            )
        )
    return typer.Exit(int(code))


@contextmanager
def one_line_errors(as_json: bool = False) -> Iterator[None]:
    """Print `error: ...` and exit with the error's code instead of a traceback.

    A config error lists every problem, one per line, under that first line.
    """
    try:
        yield
    except (RenderClusterError, OSError) as exc:
        raise fail(str(exc), exit_code_of(exc), as_json) from None
    except Exception as exc:  # never a traceback: the kind of error, its text redacted
        message = public_message(f"{type(exc).__name__}: {exc}") or type(exc).__name__
        raise fail(f"unexpected {message}", ExitCode.ERROR, as_json) from None
