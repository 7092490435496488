"""Model calls of a fused render and a bounded fan-out, no Ray.

Calls are retried like every model call; a call that runs out of memory fails the job
(a fused tile cannot be split without changing the image: the job asks for a smaller
tile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from core.errors import JobFailed, TileOutOfMemory
from core.largeformat.fanout import ModelCall, abandon, call_with_retries
from core.largeformat.job_context import JobContext

__all__ = ["fan_out", "model_call"]

Item = TypeVar("Item")
Answer = TypeVar("Answer")


async def model_call(ctx: JobContext, call: ModelCall, request: Any, name: str) -> Any:
    """One call with the job's retries; out of memory fails the job with advice."""
    try:
        return await call_with_retries(call, request, name, ctx.job_id, ctx.retry, ctx.stats)
    except TileOutOfMemory as exc:
        raise JobFailed(
            ctx.job_id,
            f"{name} ran out of memory ({exc.reason}); a fused tile cannot be split: "
            "send a smaller tile_size",
        ) from None


async def fan_out(
    items: Iterable[Item],
    run: Callable[[Item], Awaitable[Answer]],
    take: Callable[[Item, Answer], None],
    limit: int,
) -> None:
    """`run` every item, at most `limit` at once; `take` each answer as it arrives.

    A failure cancels the calls still running and is raised.
    """
    gate = asyncio.Semaphore(limit)

    async def bounded(item: Item) -> tuple[Item, Answer]:
        async with gate:
            return item, await run(item)

    tasks = [asyncio.create_task(bounded(item)) for item in items]
    pending = set(tasks)
    try:
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                take(*task.result())
    except BaseException:
        abandon(tasks)
        raise
