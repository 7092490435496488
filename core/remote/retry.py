"""Which provider answers are retried, and after how long.

A 429 or 5xx (and a connection that failed before any answer) is retried up to
`max_retries` times: after the provider's `Retry-After` when it sends one (seconds
or an HTTP date), else after exponential backoff with jitter
(``base * 2**attempt``, scaled by a random factor in [0.5, 1]), never longer than
`max_wait_s`. A `Retry-After` beyond `max_wait_s` is not waited for: the call
fails at once, saying what the provider asked. Anything else (4xx, a refusal, a
malformed answer, a timeout) is not retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RETRYABLE_STATUSES", "RetryDecision", "RetryPolicy", "parse_retry_after"]

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


@dataclass(frozen=True)
class RetryDecision:
    """Whether to retry, after how many seconds, and why not when not."""

    retry: bool
    delay_s: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with `Retry-After` or exponential backoff and jitter."""

    max_retries: int = 4
    max_wait_s: float = 60.0
    base_s: float = 1.0

    def decide(
        self, status: int | None, retries_so_far: int, retry_after_s: float | None, rand: float
    ) -> RetryDecision:
        """What to do after a failed attempt (`status` None: no answer, connection failed).

        `rand` is a uniform number in [0, 1) (the jitter), passed in so tests are exact.
        """
        if status is not None and status not in RETRYABLE_STATUSES:
            return RetryDecision(False, reason=f"status {status} is not retried")
        if retries_so_far >= self.max_retries:
            return RetryDecision(False, reason=f"gave up after {retries_so_far} retries")
        if retry_after_s is not None:
            if retry_after_s > self.max_wait_s:
                return RetryDecision(
                    False,
                    reason=f"the provider asked to retry after {retry_after_s:g}s, over the "
                    f"bound of {self.max_wait_s:g}s",
                )
            return RetryDecision(True, retry_after_s)
        backoff = min(self.base_s * 2**retries_so_far, self.max_wait_s)
        return RetryDecision(True, backoff * (0.5 + 0.5 * rand))
