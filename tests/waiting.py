"""Every wait in the tests has a deadline: a hang becomes a failure that says what it saw.

    view = wait_until(
        lambda: http.get(url).json(),
        lambda v: v["status"] != "running",
        timeout_s=120,
        what=f"run {run_id} to leave 'running'",
    )

`observe` is called at once and then every `interval_s`; the first value that `until`
accepts is returned. When `timeout_s` passes first, AssertionError names what was awaited
and the last value observed (as `describe` renders it: repr unless told).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _expired(what: str, timeout_s: float, last: str) -> AssertionError:
    return AssertionError(f"gave up after {timeout_s:g}s waiting for {what}; last seen: {last}")


def wait_until(
    observe: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.2,
    describe: Callable[[T], str] = repr,
) -> T:
    """Poll `observe()` until `until(value)` is true; return that value, or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = observe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise _expired(what, timeout_s, describe(value))
        time.sleep(interval_s)


async def wait_until_async(
    observe: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.2,
    describe: Callable[[T], str] = repr,
) -> T:
    """`wait_until` inside an event loop: sleeps with asyncio, so other tasks keep running."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = observe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise _expired(what, timeout_s, describe(value))
        await asyncio.sleep(interval_s)
