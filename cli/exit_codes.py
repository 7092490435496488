"""The exit codes of `rendercluster`, one per way a command can fail (README: "Exit codes").

Scripts tell failures apart by code: a retry helps after 6 (overloaded) or 8
(unreachable), never after 4 (rejected input).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "for_http_status"]

GATE_MARK = "keeps the image for review"
"""The words every typography-gate failure of the API ends with."""


class ExitCode(IntEnum):
    """What a command's exit status means."""

    OK = 0
    ERROR = 1  # anything else (an unexpected failure, printed in one line)
    USAGE = 2  # a wrong option or argument, or a config file that cannot be used
    NOT_FOUND = 3  # the named run, job, campaign or input file does not exist
    REJECTED = 4  # the cluster (or the CLI, before sending) refused the request as invalid
    GATE_FAILED = 5  # the typography gate failed the render's text; the image is kept for review
    OVERLOADED = 6  # the cluster is at capacity or a quota is spent (HTTP 429/503): retry later
    SERVER_ERROR = 7  # the cluster failed (HTTP 5xx other than 503)
    UNREACHABLE = 8  # no answer from the cluster (refused, timed out)
    UNAUTHORIZED = 9  # no API key, or one the cluster does not accept (HTTP 401/403)
    REGRESSED = 10  # `eval --baseline`: a metric dropped more than --max-drop allows


def for_http_status(status: int, message: str = "") -> ExitCode:
    """The exit code of an HTTP error answer."""
    if status in (401, 403):
        return ExitCode.UNAUTHORIZED
    if status == 404:
        return ExitCode.NOT_FOUND
    if status in (429, 503):
        return ExitCode.OVERLOADED
    if status >= 500:
        return ExitCode.SERVER_ERROR
    if status == 422 and GATE_MARK in message:
        return ExitCode.GATE_FAILED
    return ExitCode.REJECTED
