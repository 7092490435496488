"""The contract between the HTTP API, the CLI, the router and the model servers.

Pydantic models describe what crosses HTTP; the dataclasses describe what
crosses Ray (images travel as uint8 numpy arrays, never re-encoded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

RenderMode = Literal["txt2img", "img2img", "inpaint"]
ImageFormat = Literal["png", "jpeg", "webp"]
MAX_SEED = 2**63 - 1


class RenderRequestBody(BaseModel):
    """`POST /v1/renders`: one render. Size limits come from the cluster config."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, description="What to draw.")
    negative_prompt: str = Field("", description="What to keep out of the image.")
    width: int | None = Field(
        None, description="Output width in pixels (default: the model's native size)."
    )
    height: int | None = Field(
        None, description="Output height in pixels (default: the model's native size)."
    )
    steps: int | None = Field(None, description="Denoising steps (default: the model's).")
    guidance: float | None = Field(
        None, ge=0, le=50, description="Classifier-free guidance scale (default: the model's)."
    )
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Random seed; chosen and returned when unset."
    )
    model: str | None = Field(None, description="Model name; wins over style.")
    style: str | None = Field(None, description="Style label routed to a model by the config.")
    init_image: str | None = Field(
        None, description="Base64 PNG/JPEG/WebP to start from (img2img, inpaint)."
    )
    mask: str | None = Field(
        None, description="Base64 mask, white = repaint; needs init_image of the same size."
    )
    strength: float = Field(
        0.75, gt=0, le=1, description="How far img2img/inpaint may move from init_image."
    )
    format: ImageFormat = Field("png", description="Encoding of the returned image.")


class RenderResponse(BaseModel):
    """The JSON answer of a finished render."""

    id: str
    seed: int
    model: str
    mode: RenderMode
    width: int
    height: int
    format: ImageFormat
    timings: dict[str, float]
    image_base64: str


class ModelSummary(BaseModel):
    """One served model, as `GET /v1/models` lists it."""

    name: str
    source: str
    family: str
    native_resolution: int
    latent_factor: int
    default_steps: int
    default_guidance: float
    gpus_per_replica: float
    min_replicas: int
    max_replicas: int


@dataclass
class GenerateRequest:
    """One image for a model server to render; arrays are uint8."""

    prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    mode: RenderMode = "txt2img"
    negative_prompt: str = ""
    strength: float = 0.75
    init_image: np.ndarray | None = field(default=None, repr=False)  # (H, W, 3)
    mask: np.ndarray | None = field(default=None, repr=False)  # (H, W), 0 or 255

    def batch_key(self) -> tuple:
        """Requests with equal keys can run as one pipeline call."""
        return (self.mode, self.width, self.height, self.steps, self.guidance, self.strength)


@dataclass
class GenerateResult:
    """A rendered image and where and how it was made."""

    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    seed: int
    compute_s: float
    batch_size: int
    replica: str
    gpu_ids: list[str]
