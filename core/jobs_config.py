"""The `jobs:` section of the cluster config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["JobsConfig"]


class JobsConfig(BaseModel):
    """Durable jobs: how many run at once, how long a lease lasts, how webhooks are sent."""

    model_config = ConfigDict(extra="forbid")

    max_running_per_model: int = Field(
        2, ge=1, le=1000, description="Jobs of one model that run at once (the rest queue)."
    )
    warm_routers: int = Field(
        2,
        ge=0,
        le=64,
        description="Tile routers kept started and idle, so that a large job starts at once.",
    )
    max_queued_per_model: int = Field(
        64, ge=1, le=100_000, description="Jobs of one model that may wait; beyond it: 429."
    )
    lease_ttl_s: float = Field(
        30.0, gt=0, le=3600, description="How long a job's lease lasts without renewal."
    )
    poll_interval_s: float = Field(
        0.5, gt=0, le=60, description="How often the supervisor looks at the queue."
    )
    max_attempts: int = Field(
        5, ge=1, le=100, description="Starts of one job (after crashes) before it fails."
    )
    webhook_secret_env: str = Field(
        "RENDERCLUSTER_WEBHOOK_SECRET",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the webhook signing secret.",
    )
    webhook_max_attempts: int = Field(
        5, ge=1, le=50, description="Delivery attempts of one webhook before giving up."
    )
    webhook_backoff_s: float = Field(
        1.0, ge=0, le=600, description="Pause after the first failed delivery (doubles)."
    )
