"""`RemoteCaller` against the local HTTP double of each provider: no Ray, real HTTP.

Exact sizes, records, retries on 429 / 500 (Retry-After honoured), timeouts, refusals,
malformed answers, missing capabilities, the key kept out of errors, and one limiter
bounding two callers (two replicas) together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from core.errors import ContentRefused, ProviderError, ProviderTimeout, UnsupportedCapability
from core.remote.caller import RemoteCaller
from core.remote.config import RemoteConfig
from core.remote.http import HttpTransport
from core.remote.limits import AsyncLimiter, LimiterState
from core.remote.providers import adapter_for
from core.schemas import GenerateRequest, GenerateResult
from tests.remote_double import KEY, ProviderDouble

GEMINI_ENDPOINT = "/google/v1beta/models/gemini-2.5-flash-image:generateContent"
MODELS = {
    "openai": "gpt-image-1",
    "ideogram": "V_2",
    "imagen": "imagen-4.0-generate-001",
    "gemini": "gemini-2.5-flash-image",
}


@pytest.fixture(scope="module")
def double() -> Iterator[ProviderDouble]:
    server = ProviderDouble(slow_s=2.0).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh(double: ProviderDouble) -> None:
    double.reset()


def remote(
    double: ProviderDouble, provider: str, model: str | None = None, **fields
) -> RemoteConfig:
    values = {"max_retries": 3, "max_retry_wait_s": 5, "cost_per_image": 0.04, **fields}
    model = model or MODELS[provider]
    return RemoteConfig(
        provider=provider, model=model, base_url=double.base_url(provider), **values
    )


def request(width: int = 1000, height: int = 600, **fields) -> GenerateRequest:
    return GenerateRequest("a red kite", width, height, steps=4, guidance=5.0, seed=7, **fields)


def render(config: RemoteConfig, body: GenerateRequest, limiter=None, key: str | None = KEY):
    """Render `body` with a fresh transport and limiter; the result or the error raised."""

    async def main() -> GenerateResult:
        http = HttpTransport()
        bound = limiter or AsyncLimiter(LimiterState(config.max_concurrency, 60_000))
        caller = RemoteCaller(
            "hosted", config, adapter_for(config.provider), http.send, http.fetch, bound,
            key=lambda: key,
        )  # fmt: skip
        try:
            return await caller.render(body)
        finally:
            await http.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_each_provider_renders_exactly_the_asked_size_and_records_the_call(double, provider):
    result = render(remote(double, provider), request(1000, 600))
    assert result.image.shape == (600, 1000, 3) and result.image.dtype == np.uint8
    call = result.provider
    assert (call["provider"], call["provider_model"]) == (provider, MODELS[provider])
    assert call["cost_usd"] == 0.04 and call["retries"] == 0 and call["latency_s"] > 0
    assert call["size"]["asked"] == [1000, 600] and call["size"]["action"] == "resize+crop"
    assert double.violations == []
    (seen,) = double.requests_to(provider)
    assert KEY in str(seen.headers)  # sent in the provider's header ...
    assert KEY not in str(result.provider)  # ... never in what is recorded


def test_what_each_provider_returns_about_the_call_is_recorded(double):
    ideogram = render(remote(double, "ideogram"), request()).provider
    assert ideogram["seed"] == 7 and ideogram["revised_prompt"] == "a red kite, crisp typography"
    assert ideogram["size"]["requested"] == "ASPECT_16_10"  # 1000x600 is nearer 16:10
    dalle = render(remote(double, "openai", "dall-e-3"), request()).provider
    assert dalle["revised_prompt"] == "A detailed rendering of a red kite"
    assert dalle["request_id"].startswith("req_") and dalle["size"]["requested"] == "1792x1024"
    assert "seed" in dalle["ignored"]
    assert render(remote(double, "gemini"), request()).provider["request_id"].startswith("resp-")


def test_ideogram_v3_goes_through_its_form_api(double):
    result = render(remote(double, "ideogram", "V_3"), request(800, 1000))
    assert result.image.shape == (1000, 800, 3)
    (seen,) = double.requests_to("ideogram")
    assert seen.endpoint == "/ideogram/v1/ideogram-v3/generate"
    assert seen.headers["content-type"].startswith("multipart/form-data")
    assert seen.body["aspect_ratio"] == "4x5"


@pytest.mark.parametrize(
    ("provider", "model", "endpoint"),
    [("openai", "gpt-image-1", "/openai/v1/images/edits"), ("ideogram", "V_2", "/ideogram/remix"),
     ("ideogram", "V_3", "/ideogram/v1/ideogram-v3/remix"),
     ("gemini", "gemini-2.5-flash-image", GEMINI_ENDPOINT)],
)  # fmt: skip
def test_img2img_goes_to_the_edit_api_and_comes_back_at_the_input_size(
    double, provider, model, endpoint
):
    init = np.full((480, 640, 3), 90, np.uint8)
    result = render(
        remote(double, provider, model), request(640, 480, mode="img2img", init_image=init)
    )
    assert result.image.shape == (480, 640, 3)
    assert result.provider["size"]["action"] == "stretch" and result.provider["mode"] == "img2img"
    assert [seen.endpoint for seen in double.requests_to(provider)] == [endpoint]
    assert double.violations == []


@pytest.mark.parametrize(
    ("provider", "model", "endpoint"),
    [("openai", "dall-e-2", "/openai/v1/images/edits"), ("ideogram", "V_2", "/ideogram/edit"),
     ("ideogram", "V_3", "/ideogram/v1/ideogram-v3/edit")],
)  # fmt: skip
def test_inpaint_sends_image_and_mask_to_the_edit_api(double, provider, model, endpoint):
    init, mask = np.full((512, 512, 3), 90, np.uint8), np.zeros((512, 512), np.uint8)
    mask[100:300, 100:300] = 255
    body = request(512, 512, mode="inpaint", init_image=init, mask=mask)
    result = render(remote(double, provider, model), body)
    assert result.image.shape == (512, 512, 3)
    assert [seen.endpoint for seen in double.requests_to(provider)] == [endpoint]
    assert double.violations == []


@pytest.mark.parametrize(
    ("provider", "model", "mode"),
    [("imagen", "imagen-4.0-generate-001", "img2img"),
     ("imagen", "imagen-4.0-generate-001", "inpaint"),
     ("openai", "dall-e-3", "img2img"), ("gemini", "gemini-2.5-flash-image", "inpaint")],
)  # fmt: skip
def test_a_missing_capability_is_a_422_naming_the_model_and_sends_nothing(
    double, provider, model, mode
):
    init, mask = np.zeros((64, 64, 3), np.uint8), np.full((64, 64), 255, np.uint8)
    body = request(64, 64, mode=mode, init_image=init, mask=mask if mode == "inpaint" else None)
    with pytest.raises(UnsupportedCapability) as caught:
        render(remote(double, provider, model), body)
    assert caught.value.status_code == 422
    assert f"model 'hosted' cannot do {mode}" in str(caught.value) and model in str(caught.value)
    assert double.requests_to(provider) == []


def test_a_429_is_retried_after_its_retry_after(double):
    double.fail_next("openai", "429:1")
    started = time.monotonic()
    result = render(remote(double, "openai"), request())
    assert time.monotonic() - started >= 1.0
    assert result.provider["retries"] == 1 and result.provider["waited_s"] >= 1.0
    assert len(double.requests_to("openai")) == 2


def test_5xx_and_dropped_connections_are_retried_with_backoff(double):
    double.fail_next("imagen", "500", "500")
    result = render(remote(double, "imagen"), request())
    assert result.provider["retries"] == 2 and result.image.shape == (600, 1000, 3)


def test_retries_are_bounded_then_the_render_fails_clearly(double):
    double.fail_next("gemini", "500", "500", "500", "500", "500")
    with pytest.raises(ProviderError) as caught:
        render(remote(double, "gemini", max_retries=2), request())
    error = caught.value
    assert (error.status, error.retries, error.status_code) == (500, 2, 502)
    assert "status 500: The server had an error; gave up after 2 retries" in str(error)
    assert len(double.requests_to("gemini")) == 3


def test_a_retry_after_beyond_the_bound_is_not_waited_for(double):
    double.fail_next("openai", "429:3600")
    with pytest.raises(ProviderError, match="retry after 3600s, over the bound of 5s"):
        render(remote(double, "openai"), request())


def test_a_slow_provider_times_out_and_is_not_retried(double):
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        render(remote(double, "ideogram", timeout_s=0.5), GenerateRequest(
            "SLOW kite", 512, 512, steps=1, guidance=1.0, seed=1))  # fmt: skip
    assert time.monotonic() - started < 1.9  # the double answers after 2 s
    assert caught.value.status_code == 504 and "timeout_s=0.5s" in str(caught.value)


def test_a_malformed_answer_fails_without_retrying(double):
    double.fail_next("openai", "malformed")
    with pytest.raises(ProviderError, match="malformed answer: the answer is not JSON"):
        render(remote(double, "openai"), request())
    assert len(double.requests_to("openai")) == 1


@pytest.mark.parametrize(
    ("provider", "reason"),
    [("openai", "Your request was rejected as a result of our safety system."),
     ("ideogram", "Prompt or provided image failed the safety checks"),
     ("imagen", "safety filter threshold filtered out the generated image"),
     ("gemini", "prompt blocked: PROHIBITED_CONTENT")],
)  # fmt: skip
def test_a_content_refusal_is_a_422_with_the_provider_s_reason(double, provider, reason):
    body = GenerateRequest("FORBIDDEN thing", 512, 512, steps=1, guidance=1.0, seed=1)
    with pytest.raises(ContentRefused) as caught:
        render(remote(double, provider), body)
    assert caught.value.status_code == 422 and caught.value.field == "prompt"
    assert reason in str(caught.value)
    assert len(double.requests_to(provider)) == 1  # never retried


def test_a_missing_key_fails_naming_the_variable_not_sending(double):
    with pytest.raises(ProviderError, match="IDEOGRAM_API_KEY is not set"):
        render(remote(double, "ideogram"), request(), key=None)
    assert double.requests_to("ideogram") == []


def test_a_wrong_key_is_never_quoted_back(double):
    wrong = "sk-wrong-key-abcdefgh12345678"
    with pytest.raises(ProviderError) as caught:
        render(remote(double, "openai"), request(), key=wrong)
    assert "status 400" in str(caught.value)
    assert wrong not in str(caught.value) and wrong[-4:] not in str(caught.value)


def test_two_callers_sharing_a_limiter_never_exceed_its_bound(double):
    """Two replicas of one hosted model: 12 calls, at most 2 at the provider at once."""
    slow = ProviderDouble(latency_s=0.15).start()
    try:
        config = remote(slow, "gemini", max_concurrency=2)

        async def main() -> int:
            limiter = AsyncLimiter(LimiterState(2, 60_000))
            transports = [HttpTransport(), HttpTransport()]
            callers = [
                RemoteCaller("hosted", config, adapter_for("gemini"), t.send, t.fetch, limiter,
                             key=lambda: KEY)
                for t in transports
            ]  # fmt: skip
            results = await asyncio.gather(
                *(callers[i % 2].render(request(256, 256)) for i in range(12))
            )
            for transport in transports:
                await transport.aclose()
            return len(results)

        assert asyncio.run(main()) == 12
        assert slow.max_in_flight["gemini"] == 2
    finally:
        slow.stop()
