"""How one model is served: its autoscaling, batching and, for upscalers, tiling.

The sections of a model entry (`core.config.ModelConfig`) that are plain settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AutoscalingConfig", "BatchingConfig", "UpscalerOptions"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoscalingConfig(_Strict):
    """How Serve scales a model's GPU replicas."""

    min_replicas: int = Field(1, ge=0, le=1000, description="Fewest replicas kept running.")
    max_replicas: int = Field(4, ge=1, le=1000, description="Most replicas Serve may start.")
    initial_replicas: int | None = Field(
        None, ge=0, le=1000, description="Replicas at start (default: min_replicas)."
    )
    target_ongoing_requests: float = Field(
        2.0, gt=0, le=1000, description="Ongoing requests per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(
        5.0, ge=0, le=3600, description="Seconds of sustained load before adding replicas."
    )
    downscale_delay_s: float = Field(
        120.0, ge=0, le=86400, description="Seconds of low load before removing replicas."
    )
    metrics_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often replicas report their load."
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> AutoscalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})"
            )
        initial = self.initial_replicas
        if initial is not None and not self.min_replicas <= initial <= self.max_replicas:
            raise ValueError(
                f"initial_replicas ({initial}) must lie between min_replicas "
                f"({self.min_replicas}) and max_replicas ({self.max_replicas})"
            )
        return self


class BatchingConfig(_Strict):
    """Dynamic batching of requests that share mode, size and steps."""

    max_batch_size: int = Field(4, ge=1, le=64, description="Most requests run as one batch.")
    batch_wait_timeout_s: float = Field(
        0.01, ge=0, le=10, description="How long a partial batch waits for more requests."
    )
    fixed_batch_shape: bool = Field(
        False,
        description=(
            "Pad partial batches to max_batch_size so that a request's bytes never depend "
            "on what it was batched with (kernels differ in the last bits by batch size); "
            "costs a lone request max_batch_size images of compute. Off: a request costs "
            "one image, and its bytes may differ in the last bit by batch."
        ),
    )


class UpscalerOptions(_Strict):
    """How an upscaler model (family 'upscaler') is run and tiled."""

    scale: Literal[2, 3, 4] = Field(
        4, description="Output size / input size; must match a 'realesrgan:' variant's scale."
    )
    tile_size: int = Field(
        256, ge=16, le=4096, description="Side of a source tile in pixels (before upscaling)."
    )
    context_padding: int = Field(
        10,
        ge=0,
        le=256,
        description=(
            "Source pixels of context added around each tile and cropped after upscaling, "
            "so that tiles match the whole-image result."
        ),
    )
    backend: Literal["auto", "ncnn", "torch"] = Field(
        "auto",
        description=(
            "What runs the network: 'auto' is torch on a replica with a CUDA GPU and ncnn "
            "elsewhere; 'ncnn' (CPU, or Vulkan on a GPU) or 'torch' (CUDA, else CPU) forces one. "
            "torch runs 'realesrgan:' variants and .param/.bin graphs of the same layers."
        ),
    )
