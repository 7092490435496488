"""What a run record keeps of a hosted call (`RunRecord.provider`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, NonNegativeFloat

__all__ = ["ProviderCall", "provider_fields", "total_cost"]


class ProviderCall(BaseModel):
    """One image from a provider's API: who made it, what it returned, what it cost."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    provider: str = Field(description="openai, ideogram, imagen or gemini.")
    provider_model: str = Field(description="The provider's model id.")
    request_id: str | None = Field(None, description="The provider's id of the request.")
    seed: int | None = Field(None, description="The seed the provider reports, if it does.")
    revised_prompt: str | None = Field(
        None, description="The prompt the provider actually used, when it rewrote ours."
    )
    mode: str = Field("txt2img", description="txt2img, img2img or inpaint.")
    latency_s: NonNegativeFloat = Field(
        0.0, description="Seconds of the successful attempt, answer and download."
    )
    waited_s: NonNegativeFloat = Field(
        0.0, description="Seconds spent waiting for the rate limit and between retries."
    )
    retries: int = Field(0, ge=0, description="Attempts sent again after a 429, 5xx or no answer.")
    cost_usd: NonNegativeFloat = Field(0.0, description="cost_per_image x images returned.")
    size: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="What was asked, what the provider was asked for, what came back and "
        "what was done to it (see core.remote.sizes.FitPlan).",
    )
    ignored: list[str] = Field(
        default_factory=list, description="Request parameters the provider did not receive."
    )


def provider_fields(
    provider: dict[str, Any] | None, extra: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """A run record's fields for a model call's `GenerateResult.provider` (none if local).

    `extra`: the same model's further hosted calls for the same image (an integrated text
    box's masked pass, a quiet-zone inpaint); their cost is added to `cost_usd`.
    """
    if provider is None:
        return {}
    costs = [call.get("cost_usd", 0.0) for call in (provider, *extra)]
    # validated here: records are also updated with `model_copy`, which does not validate
    return {"provider": ProviderCall.model_validate(provider), "cost_usd": round(sum(costs), 6)}


def total_cost(costs: list[float | None]) -> float | None:
    """The sum of the runs' costs, None when none of them called a hosted model."""
    known = [cost for cost in costs if cost is not None]
    return round(sum(known), 6) if known else None
