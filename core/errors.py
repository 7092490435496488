"""Errors typed by what the caller can do about them.

- `RequestError`: the caller must fix the request (HTTP 4xx).
- `QuotaExceeded`: a tenant's limit is reached (HTTP 429 with Retry-After).
- `OverloadedError`: retry later (HTTP 503 with Retry-After); `QueueFull`: a model's
  job queue is full (HTTP 429 with Retry-After).
- `ReplicaUnavailable`: a replica died or cannot be reached; the call may be sent again.
- `TileOutOfMemory`: the router splits the tile into smaller ones.
- `TileError`: the model failed on a tile; not retried, the job fails.
- `JobFailed`: the job is over; the message says why.
- `ConfigError`: the config file is wrong; every problem is listed.
- `ModelOutputError`: a model returned no usable picture (NaN or infinite pixels) (HTTP 500, the
  reason in words: it is the model's configuration, not the request).
- `ProviderError` / `ProviderTimeout`: a hosted model's provider failed (HTTP 502 / 504);
  `ContentRefused` and `UnsupportedCapability` are request errors (422).

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


class ModelOutputError(RenderClusterError):
    """A model returned pixels that are not finite (its weights overflow at its dtype)."""

    status_code = 500

    def __init__(self, model: str, count: int, dtype: str):
        super().__init__(model, count, dtype)
        self.model = model
        self.count = count
        self.dtype = dtype

    def __str__(self) -> str:
        found = (
            f"model {self.model!r} returned {self.count} NaN or infinite pixel values "
            f"in {self.dtype}"
        )
        if self.dtype == "float32":
            return f"{found}: its weights are broken"
        other = "float32" if self.dtype == "bfloat16" else "bfloat16 or float32"
        return f"{found}: its weights overflow at that precision; set its dtype to {other}"


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
    """A model cannot take the work now; the caller should retry after `retry_after_s`.

    `reason` says why when it is not simply a full queue (e.g. no replica can be placed).
    """

    status_code = 503

    def __init__(self, model: str, retry_after_s: int = 1, reason: str | None = None):
        super().__init__(model, retry_after_s, reason)
        self.model = model
        self.retry_after_s = retry_after_s
        self.reason = reason

    def __str__(self) -> str:
        if self.reason:
            return f"model {self.model!r} cannot take work: {self.reason}"
        return f"model {self.model!r} is at capacity; retry after {self.retry_after_s}s"


class QueueFull(OverloadedError):
    """A model's job queue holds `queued` jobs, at its `limit` (HTTP 429 with Retry-After)."""

    status_code = 429

    def __init__(self, model: str, queued: int, limit: int, retry_after_s: int = 5):
        RenderClusterError.__init__(self, model, queued, limit, retry_after_s)
        self.model = model
        self.queued = queued
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.reason = f"its job queue holds {queued} jobs, the limit (jobs.max_queued_per_model)"

    def __str__(self) -> str:
        return (
            f"model {self.model!r}: job queue full ({self.queued} queued, limit "
            f"jobs.max_queued_per_model = {self.limit}); retry after {self.retry_after_s}s"
        )


class QuotaExceeded(RenderClusterError):
    """A tenant's key reached one of its limits (HTTP 429 with Retry-After naming the limit)."""

    status_code = 429

    def __init__(self, limit: str, value: int, retry_after_s: int, detail: str = ""):
        super().__init__(limit, value, retry_after_s, detail)
        self.limit = limit
        self.value = value
        self.retry_after_s = retry_after_s
        self.detail = detail

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return (
            f"limit {self.limit} = {self.value} reached{extra}; retry after {self.retry_after_s}s"
        )


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


class ProviderError(RenderClusterError):
    """A hosted model's provider failed the call (an error answer, retries spent, a bad answer).

    `status` is the provider's last HTTP status (None: no answer), `retries` how many
    times the call was sent again before giving up.
    """

    status_code = 502

    def __init__(
        self, model: str, provider: str, reason: str, status: int | None = None, retries: int = 0
    ):
        super().__init__(model, provider, reason, status, retries)
        self.model = model
        self.provider = provider
        self.reason = reason
        self.status = status
        self.retries = retries

    def __str__(self) -> str:
        return f"model {self.model!r} ({self.provider}): {self.reason}"


class ProviderTimeout(ProviderError):
    """A hosted model's call took longer than its `timeout_s`: an error, never a hang."""

    status_code = 504


class ContentRefused(RequestError):
    """The provider refused the request's content; `reason` is the provider's own words."""

    def __init__(self, model: str, provider: str, reason: str):
        super().__init__("prompt", f"{provider} refused the request to model {model!r}: {reason}")
        self.args = (model, provider, reason)  # what unpickling calls us with
        self.model = model
        self.provider = provider
        self.reason = reason


class UnsupportedCapability(RequestError):
    """The model cannot do what the request asks (img2img or inpaint without an edit API)."""

    def __init__(self, model: str, capability: str, detail: str):
        field = "mask" if capability == "inpaint" else "init_image"
        super().__init__(field, f"model {model!r} cannot do {capability}: {detail}")
        self.args = (model, capability, detail)
        self.model = model
        self.capability = capability
        self.detail = detail
