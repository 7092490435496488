"""`RemoteCaller`: one `GenerateRequest` rendered by a provider, with the local contract.

The hosted model's Serve deployment (`serve.remote_server`) is a thin shell around
this; everything it does is here, with the HTTP transport, the shared limiter, the
clock, the sleep and the jitter passed in, so that it is tested without Ray:

1. the mode must be one the model takes (else `UnsupportedCapability`, a 422 that
   names the model and what it lacks);
2. the closest size the provider offers is asked for (`core.remote.sizes`);
3. each attempt takes a lease from the limiter (bounded across replicas), is sent
   and, for providers that answer with a URL, downloaded, all within `timeout_s`
   (`ProviderTimeout` beyond it: never a hang, never retried);
4. a 429, a 5xx or no answer is retried by `RetryPolicy` (a 429's `Retry-After`
   also pauses every replica's starts); a refusal is `ContentRefused` (422, with the
   provider's reason); any other error answer or a malformed one is `ProviderError`;
5. the image is made exactly the asked size, and the call is described in
   `GenerateResult.provider` (a `ProviderCall`) for the run record.

The API key is read from its environment variable at every call and never goes
into an error, a record or a log line (`_scrub` removes it from provider messages).
"""

from __future__ import annotations

import asyncio
import io
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import ContentRefused, ProviderError, ProviderTimeout, UnsupportedCapability
from core.remote.config import RemoteConfig
from core.remote.record import ProviderCall
from core.remote.retry import RetryPolicy, parse_retry_after
from core.remote.sizes import closest_option, fit, fit_plan, stretch
from core.remote.wire import (
    Adapter,
    HttpCall,
    HttpReply,
    Malformed,
    ProviderReply,
    Refused,
    RemoteCall,
    error_message,
)
from core.schemas import GenerateRequest, GenerateResult

__all__ = ["Limiter", "NoAnswer", "RemoteCaller", "Send"]


class NoAnswer(Exception):
    """The provider could not be reached or dropped the connection (retried)."""


Send = Callable[[HttpCall, float], Awaitable[HttpReply]]
"""Send a request with a timeout in seconds; `NoAnswer` when nothing came back."""

Fetch = Callable[[str, float], Awaitable[HttpReply]]
"""GET a URL (a provider's image) with a timeout in seconds."""


class Limiter(Protocol):
    """The bound shared by every replica (`core.remote.limits.AsyncLimiter` or its actor)."""

    async def acquire(self) -> str: ...

    async def release(self, lease: str) -> bool: ...

    async def cool_down(self, seconds: float) -> None: ...


@dataclass
class _Success:
    reply: ProviderReply
    image: bytes
    latency_s: float


@dataclass
class _Failure:
    status: int | None
    retry_after_s: float | None
    message: str


class RemoteCaller:
    """Renders requests on one hosted model (see the module)."""

    def __init__(
        self,
        model_name: str,
        remote: RemoteConfig,
        adapter: Adapter,
        send: Send,
        fetch: Fetch,
        limiter: Limiter,
        key: Callable[[], str | None],
        identity: Callable[[], str] = lambda: "local",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ):
        self.model_name = model_name
        self.remote = remote
        self.adapter = adapter
        self.base_url = (remote.base_url or adapter.DEFAULT_BASE_URL).rstrip("/")
        self.policy = RetryPolicy(remote.max_retries, remote.max_retry_wait_s)
        self._send, self._fetch, self._limiter, self._key = send, fetch, limiter, key
        self._identity, self._sleep, self._clock, self._rand = identity, sleep, clock, rand

    def error(self, reason: str, status: int | None = None, retries: int = 0) -> ProviderError:
        return ProviderError(self.model_name, self.remote.provider, reason, status, retries)

    async def render(self, request: GenerateRequest) -> GenerateResult:
        """One image, exactly `request.width` x `request.height` (see the module)."""
        started_at, started = time.time(), self._clock()
        key = self._key()
        if not key:
            raise self.error(
                f"the API key variable {self.remote.key_env} is not set on the replica"
            )
        call = self.prepare(request)
        http = self.adapter.build(call, self.base_url, key)
        success, retries, waited = await self._send_with_retries(http, key)
        returned = _decode(success.image, self.error)
        asked = (request.width, request.height)
        plan = fit_plan(
            asked, (returned.shape[1], returned.shape[0]), call.size.label,
            keep_aspect=call.mode == "txt2img",
        )  # fmt: skip
        provider = ProviderCall(
            provider=self.remote.provider,
            provider_model=self.remote.model,
            request_id=success.reply.request_id,
            seed=success.reply.seed,
            revised_prompt=success.reply.revised_prompt,
            mode=call.mode,
            latency_s=round(success.latency_s, 4),
            waited_s=round(waited, 4),
            retries=retries,
            cost_usd=self.remote.cost_per_image,
            size=plan.record() | {"params": dict(call.size.params)},
            ignored=self.adapter.ignored(call),
        )
        return GenerateResult(
            image=np.ascontiguousarray(fit(returned, plan)),
            seed=request.seed,
            compute_s=self._clock() - started,
            batch_size=1,
            replica=self._identity(),
            gpu_ids=[],
            started_at=started_at,
            provider=provider.model_dump(mode="json"),
        )

    def prepare(self, request: GenerateRequest) -> RemoteCall:
        """The adapter's call: capability checked, closest size chosen, images stretched to it."""
        model, mode = self.remote.model, request.mode
        capabilities = self.adapter.capabilities(model)
        if mode not in capabilities:
            raise UnsupportedCapability(
                self.model_name,
                mode,
                f"{self.remote.provider} model {model!r} has no API for it "
                f"(it takes {', '.join(sorted(capabilities))})",
            )
        option = closest_option(
            self.adapter.size_options(model, mode), request.width, request.height
        )
        size = (option.width, option.height)
        image = request.init_image
        mask = request.mask
        return RemoteCall(
            model=model,
            prompt=request.prompt,
            size=option,
            mode=mode,
            negative_prompt=request.negative_prompt,
            seed=request.seed,
            strength=request.strength,
            image=None if image is None else stretch(image, size),
            mask=None if mask is None else stretch(mask, size, nearest=True),
        )

    async def _send_with_retries(self, http: HttpCall, key: str) -> tuple[_Success, int, float]:
        """The first successful attempt, with the retries it took and the seconds waited."""
        retries, waited = 0, 0.0
        while True:
            before = self._clock()
            lease = await self._limiter.acquire()
            waited += self._clock() - before
            try:
                outcome = await asyncio.wait_for(self._attempt(http, key), self.remote.timeout_s)
            except TimeoutError:
                raise ProviderTimeout(
                    self.model_name,
                    self.remote.provider,
                    f"no answer within timeout_s={self.remote.timeout_s:g}s "
                    f"(attempt {retries + 1})",
                    None,
                    retries,
                ) from None
            finally:
                await self._limiter.release(lease)
            if isinstance(outcome, _Success):
                return outcome, retries, waited
            decision = self.policy.decide(
                outcome.status, retries, outcome.retry_after_s, self._rand()
            )
            if not decision.retry:
                what = "no answer" if outcome.status is None else f"status {outcome.status}"
                reason = f"{what}: {outcome.message}; {decision.reason}"
                raise self.error(_scrub(reason, key), outcome.status, retries)
            if outcome.status == 429 and outcome.retry_after_s is not None:
                await self._limiter.cool_down(decision.delay_s)
            await self._sleep(decision.delay_s)
            waited += decision.delay_s
            retries += 1

    async def _attempt(self, http: HttpCall, key: str) -> _Success | _Failure:
        """One send (and download): a success, or a failure the policy decides about."""
        started = self._clock()
        try:
            reply = await self._send(http, self.remote.timeout_s)
        except NoAnswer as exc:
            return _Failure(None, None, _scrub(str(exc), key))
        if not 200 <= reply.status < 300:
            refused = self.adapter.refusal(reply)
            if refused is not None:
                raise ContentRefused(self.model_name, self.remote.provider, _scrub(refused, key))
            retry_after = parse_retry_after(reply.headers.get("retry-after"))
            return _Failure(reply.status, retry_after, _scrub(error_message(reply), key))
        try:
            parsed = self.adapter.parse(reply)
        except Refused as exc:
            raise ContentRefused(self.model_name, self.remote.provider, exc.reason) from None
        except Malformed as exc:
            raise self.error(f"malformed answer: {exc.reason}", reply.status) from None
        image = parsed.image
        if image is None and parsed.image_url is not None:
            image = await self._download(parsed.image_url)
        if image is None:
            raise self.error("the answer carries no image", reply.status)
        return _Success(parsed, image, self._clock() - started)

    async def _download(self, url: str) -> bytes:
        try:
            reply = await self._fetch(url, self.remote.timeout_s)
        except NoAnswer as exc:
            raise self.error(
                f"the image at the provider's URL could not be fetched: {exc}"
            ) from None
        if not 200 <= reply.status < 300:
            raise self.error(f"the image download answered {reply.status}", reply.status)
        return reply.body


def _decode(data: bytes, error: Callable[..., ProviderError]) -> np.ndarray:
    """Image bytes as uint8 RGB; `ProviderError` if they are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        raise error("the provider's image could not be decoded") from None


def _scrub(text: str, key: str) -> str:
    """`text` without the API key (providers sometimes quote part of a wrong key)."""
    if key:
        text = text.replace(key, "***")
        if len(key) > 8:
            text = re.sub(r"\*+" + re.escape(key[-4:]), "****", text).replace(key[:8], "***")
    return text
