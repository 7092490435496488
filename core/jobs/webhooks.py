"""Webhook deliveries: a job's final state POSTed to its `callback_url`, signed, retried.

The body is the job's JSON; the header ``X-RenderCluster-Signature`` carries
``sha256=<hex>``, the HMAC-SHA256 of the exact body bytes with the configured
secret. A delivery that fails (no answer, or not 2xx) is tried again after
`backoff_s`, doubling, up to `max_attempts`; every attempt is kept in the job.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable

import httpx

from core.jobs.model import Delivery, Job, now

__all__ = ["SIGNATURE_HEADER", "deliver", "pending_delivery", "sign", "verify"]

SIGNATURE_HEADER = "X-RenderCluster-Signature"


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    """Whether `signature` is the signature of `body` (what a receiver checks)."""
    return hmac.compare_digest(sign(body, secret), signature)


async def deliver(
    job: Job,
    secret: str,
    save: Callable[[Job], Awaitable[Job]],
    max_attempts: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 10.0,
) -> Job:
    """POST the job's final state until a 2xx answer or `max_attempts`; return the job."""
    body = job.model_dump_json(exclude={"deliveries", "lease"}).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
        while len(job.deliveries) < max_attempts:
            attempt = len(job.deliveries) + 1
            delivery = await _attempt(client, str(job.callback_url), body, headers, attempt)
            job = await save(job.moved(deliveries=[*job.deliveries, delivery]))
            if delivery.delivered:
                break
            if attempt < max_attempts:
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    return job


async def _attempt(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], attempt: int
) -> Delivery:
    try:
        answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Delivery(attempt=attempt, at=now(), error=type(exc).__name__)
    return Delivery(attempt=attempt, at=now(), status_code=answer.status_code)


def pending_delivery(job: Job, max_attempts: int) -> bool:
    """Whether a finished job still owes its callback a delivery."""
    return (
        job.terminal
        and job.callback_url is not None
        and not any(d.delivered for d in job.deliveries)
        and len(job.deliveries) < max_attempts
    )
