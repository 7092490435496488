"""Retry policy: Retry-After honoured, exponential backoff with jitter, bounded; the rest not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.remote.retry import RetryPolicy, parse_retry_after

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 0 ", 0.0), ("1.5", 1.5), ("Wed, 01 Jan 2025 12:00:07 GMT", 7.0),
     ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0), (None, None), ("", None), ("soon", None)],
)  # fmt: skip
def test_retry_after_in_seconds_or_an_http_date(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


POLICY = RetryPolicy(max_retries=3, max_wait_s=10.0, base_s=1.0)


def test_a_429_waits_what_the_provider_asks():
    decision = POLICY.decide(429, 0, 2.0, rand=0.9)
    assert (decision.retry, decision.delay_s) == (True, 2.0)


def test_a_5xx_backs_off_exponentially_with_jitter_under_the_bound():
    low = [POLICY.decide(503, n, None, rand=0.0).delay_s for n in range(3)]
    high = [POLICY.decide(500, n, None, rand=0.999999).delay_s for n in range(3)]
    assert low == [0.5, 1.0, 2.0]
    assert high == pytest.approx([1.0, 2.0, 4.0], rel=1e-5)
    capped = RetryPolicy(max_retries=20, max_wait_s=10.0).decide(502, 10, None, rand=0.999999)
    assert capped.delay_s == pytest.approx(10.0, rel=1e-5)


def test_no_answer_is_retried_like_a_5xx():
    assert POLICY.decide(None, 0, None, rand=0.5).retry


def test_retries_stop_at_the_bound():
    decision = POLICY.decide(429, 3, 1.0, rand=0.5)
    assert not decision.retry and decision.reason == "gave up after 3 retries"


def test_a_retry_after_beyond_the_bound_fails_at_once():
    decision = POLICY.decide(429, 0, 3600.0, rand=0.5)
    assert not decision.retry
    assert decision.reason == "the provider asked to retry after 3600s, over the bound of 10s"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(status):
    assert not POLICY.decide(status, 0, None, rand=0.5).retry
