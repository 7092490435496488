"""Errors typed by what the caller can do about them.

- `RequestError`: the caller must fix the request (HTTP 4xx).
- `OverloadedError`: retry later (HTTP 503 with Retry-After).
- `TileOutOfMemory`: the router splits the tile into smaller ones.
- `TileError`: the model failed on a tile; not retried, the job fails.
- `JobFailed`: the job is over; the message says why.
- `ConfigError`: the config file is wrong; every problem is listed.

Every error keeps its constructor arguments in `args` so it survives pickling
across Ray processes.
"""

from __future__ import annotations

from typing import Any


class RenderClusterError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(RenderClusterError):
    """A config file failed validation."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__(source, problems)
        self.source = source
        self.problems = problems

    def __str__(self) -> str:
        listed = "\n".join(f"  - {p}" for p in self.problems)
        return f"invalid config {self.source}:\n{listed}"


class ModelLoadError(RenderClusterError):
    """The weights named by a model entry cannot be found or loaded."""


class RequestError(RenderClusterError):
    """The request is invalid; `field` names what to fix."""

    status_code = 422

    def __init__(self, field: str, message: str):
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class NotFoundError(RequestError):
    """A named thing (render, run, artifact) does not exist."""

    status_code = 404


class TypographyGateFailed(RequestError):
    """A render's copy failed the typography gate; the image is kept for review, not delivered.

    `review_image` is the store key of that image, `report` the gate's report (JSON).
    """

    def __init__(
        self,
        message: str,
        run_id: str,
        review_image: str | None = None,
        report: dict[str, Any] | None = None,
    ):
        super().__init__("text_boxes", f"{message} (run {run_id} keeps the image for review)")
        self.args = (message, run_id, review_image, report)  # what unpickling calls us with
        self.run_id = run_id
        self.review_image = review_image
        self.report = report


class AuthError(RenderClusterError):
    """Missing or wrong API key."""

    status_code = 401


class OverloadedError(RenderClusterError):
    """A model's queue is full; the caller should retry after `retry_after_s`."""

    status_code = 503

    def __init__(self, model: str, retry_after_s: int = 1):
        super().__init__(model, retry_after_s)
        self.model = model
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"model {self.model!r} is at capacity; retry after {self.retry_after_s}s"


class TileError(RenderClusterError):
    """The model raised on one tile; never retried: the job fails with this reason.

    Calls to a dead or unreachable replica are sent again instead, and a tile
    that ran out of memory is split (`TileOutOfMemory`, a subclass caught first).
    """

    def __init__(self, tile: str, reason: str):
        super().__init__(tile, reason)
        self.tile = tile
        self.reason = reason

    def __str__(self) -> str:
        return f"tile {self.tile}: {self.reason}"


class ReplicaUnavailable(RenderClusterError):
    """The replica serving a call died or could not be reached; the call may be sent again."""

    def __init__(self, model: str, reason: str):
        super().__init__(model, reason)
        self.model = model
        self.reason = reason

    def __str__(self) -> str:
        return f"a replica of model {self.model!r} is unavailable: {self.reason}"


class TileOutOfMemory(TileError):
    """A tile ran out of accelerator memory; retry it as smaller sub-tiles."""


class JobFailed(RenderClusterError):
    """A render job ended without a result."""

    def __init__(self, job_id: str, reason: str):
        super().__init__(job_id, reason)
        self.job_id = job_id
        self.reason = reason

    def __str__(self) -> str:
        return f"job {self.job_id} failed: {self.reason}"


class StorageError(RenderClusterError):
    """The artifact store failed (unreachable, access denied, I/O); nothing was half-written."""

    status_code = 502

    def __init__(self, location: str, reason: str):
        super().__init__(location, reason)
        self.location = location
        self.reason = reason

    def __str__(self) -> str:
        return f"storage {self.location}: {self.reason}"
