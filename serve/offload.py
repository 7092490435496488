"""Heavy pure-Python work in a worker process, so the ingress's event loop never waits.

A thread is not enough for long pure-Python or C work that holds the GIL (YAML
parsing, pydantic over thousands of items): the loop waits for the GIL. One worker
process per ingress replica (spawned on first use) takes such calls; small inputs
stay in a thread, where starting the process would cost more than the work.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")
SMALL_INPUT = 64 * 1024  # characters of input below which a thread does it

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def _background_priority() -> None:
    """The worker yields the CPU to the ingress's own process when cores are busy."""
    os.nice(10)


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            context = multiprocessing.get_context("spawn")  # no fork of a threaded process
            _pool = ProcessPoolExecutor(
                max_workers=1, mp_context=context, initializer=_background_priority
            )
        return _pool


def warm(*modules: str) -> None:
    """Start the worker process now and import `modules` there (the ingress calls this in
    a thread when it starts, so no request waits for the worker's start-up)."""
    _executor().submit(_import, modules).result()


def _import(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


async def off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a thread (small `size`) or in the worker process."""
    if size < SMALL_INPUT:
        return await asyncio.to_thread(fn, *args)
    try:  # the first submit starts the process: not on the event loop either
        future = await asyncio.to_thread(lambda: _executor().submit(fn, *args))
        return await asyncio.wrap_future(future)
    except BrokenProcessPool:  # the worker died (OOM): start another next time
        global _pool
        with _lock:
            _pool = None
        raise
