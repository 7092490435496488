"""The contract between the HTTP API, the CLI, the router and the model servers.

Pydantic models describe what crosses HTTP; the dataclasses describe what
crosses Ray (images travel as uint8 numpy arrays, never re-encoded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from core.image_metadata import ImageMetadata
from core.lora_options import LoraChoice
from core.typography.results import TypographyReport
from core.typography.schema import TextBox, TextSpec

RenderMode = Literal["txt2img", "img2img", "inpaint"]
ImageFormat = Literal["png", "jpeg", "webp", "tiff"]
JobMode = Literal["auto", "single", "hires", "tiled", "fused"]
FuseMode = Literal["gaussian", "uniform"]
MAX_SEED = 2**63 - 1
MAX_RENDER_IMAGES = 8  # `n` of one POST /v1/renders
MAX_CALL_AREA = 4
"""x native_resolution**2: the largest region an integrated text pass sends in one call
(unless the model sets a lower max_pixels_per_call)."""


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
    strength: float | None = Field(
        None,
        gt=0,
        le=1,
        description=(
            "How far img2img/inpaint may move from init_image (default 0.75), or the "
            "per-tile refine strength of a hires render (default: the config's)."
        ),
    )
    format: ImageFormat = Field(
        "png", description="Encoding of the image (large-format renders: png, jpeg or tiff)."
    )
    mode: JobMode = Field(
        "auto",
        description=(
            "'auto': one pass up to 1.25x the model's native area, 'hires' beyond it; 'single' "
            "forces one pass; 'hires': base render, upscale, tiled img2img refine; 'tiled': "
            "direct tiled txt2img (textures, panoramas; prone to repeated objects); 'fused': one "
            "coherent image of any size, the tiles' noise predictions fused at every step "
            "across all replicas (txt2img, or img2img of base_image)."
        ),
    )
    fuse: FuseMode | None = Field(
        None,
        description=(
            "Fused renders only: how overlapping tiles' predictions are weighted, 'gaussian' "
            "(Mixture of Diffusers, the default) or 'uniform' (MultiDiffusion's average)."
        ),
    )
    wait: bool = Field(
        True, description="Large-format renders only: false answers 202 with a job id at once."
    )
    dpi: int = Field(300, ge=1, le=4800, description="Resolution written into the file.")
    tile_size: int | None = Field(
        None, description="Tile side for large renders (default: the model's native size)."
    )
    overlap: int | None = Field(
        None, ge=0, description="Tile overlap in pixels (default: 1/8 of the tile)."
    )
    base_image: str | None = Field(
        None,
        description=(
            "Hires: base64 image to upscale and refine instead of a base render; fused: the "
            "image to start from (img2img at `strength`, default 0.75), stretched to the size."
        ),
    )
    hires_upscaler: str | None = Field(
        None,
        description=(
            "Hires renders: 'lanczos' or an upscaler model (family 'upscaler') that upscales "
            "the base, tiled across its replicas, before the tiled refine (default: the "
            "model's hires.upscaler)."
        ),
    )
    text_boxes: list[TextBox] = Field(
        default_factory=list,
        description=(
            "Copy typeset by code into anchor boxes after the last model pass (never drawn "
            "by the model), then gated; see docs/typography.md."
        ),
    )
    callback_url: HttpUrl | None = Field(
        None, description="Large renders: POSTed the job's final state (signed) when it ends."
    )
    scheduler: str | None = Field(
        None,
        description="A scheduler from the model's `schedulers` allow-list ('default': the "
        "model's own); not for fused renders.",
    )
    loras: list[LoraChoice] | None = Field(
        None,
        description="LoRA adapters of the model's allow-list to switch on, with scales "
        "(default: the style's `style_loras`, else none); not for fused renders.",
    )
    n: int = Field(
        1,
        ge=1,
        le=MAX_RENDER_IMAGES,
        description="One-pass renders: how many images, seeds seed, seed+1, ... (rendered "
        "together, batched on the model; each its own record). The answer lists them all "
        "in `images`.",
    )


class UpscaleRequestBody(BaseModel):
    """`POST /v1/upscale`: make an image larger with an upscaler model, tiled."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(..., min_length=1, description="Base64 PNG/JPEG/WebP to upscale.")
    scale: int = Field(
        4, ge=2, le=64, description="Total scale: the model's scale or a power of it (chained)."
    )
    model: str | None = Field(
        None, description="Upscaler model name (default: the first upscaler in the config)."
    )
    format: Literal["png", "jpeg", "tiff"] = Field("png", description="Output encoding.")
    dpi: int = Field(300, ge=1, le=4800, description="Resolution written into the file.")
    wait: bool = Field(True, description="False answers 202 with a job id at once.")
    callback_url: HttpUrl | None = Field(
        None, description="POSTed the job's final state (signed) when it ends."
    )


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
    url: str | None = None
    image_base64: str
    images: list[RenderResponse] | None = Field(
        None, description="With n > 1: every image in seed order (the first is this one)."
    )


class ReplicaWarmup(BaseModel):
    """The small render a replica made before it reported healthy (`serve.warmup`)."""

    width: int
    height: int
    steps: int
    seconds: float


class LoadedPipelines(BaseModel):
    """What a replica of a diffusion model loaded: its pipelines, dtype and placement."""

    pipelines: dict[str, str] = Field(
        description="Mode (txt2img, img2img, inpaint) -> the diffusers pipeline class."
    )
    dtype: str
    device: str
    components: dict[str, str] = Field(
        description="Each weighted component (unet or transformer, vae, text encoders) -> "
        "the device its weights sit on."
    )
    memory: list[str] | None = Field(
        None,
        description="The memory steps the replica took at load, in order (`to_device`, "
        "`model_cpu_offload`, `sequential_cpu_offload`, `drop_t5`, `vae_tiling`, ...).",
    )
    warmup: ReplicaWarmup | None = Field(
        None, description="The render the replica made before it reported healthy."
    )
    loras: list[str] | None = Field(
        None, description="LoRA adapters a render may switch on (the model's allow-list)."
    )
    fused_loras: list[str] | None = Field(
        None, description="LoRA adapters merged into the weights at load (always on)."
    )


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
    loaded: LoadedPipelines | None = Field(
        None,
        description="What a running replica loaded (absent: a model that is not a diffusion "
        "model, or no replica runs now: it is not woken to answer).",
    )


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
    scheduler: str | None = None  # one of the model's `schedulers`; None: its own
    loras: tuple[tuple[str, float], ...] = ()  # (adapter, scale) switched on for this render

    def batch_key(self) -> tuple:
        """Requests with equal keys can run as one pipeline call."""
        return (
            self.mode,
            self.width,
            self.height,
            self.steps,
            self.guidance,
            self.strength,
            self.scheduler,
            self.loras,
        )


@dataclass
class GenerateResult:
    """A rendered image and where and how it was made."""

    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    seed: int
    compute_s: float
    batch_size: int
    replica: str
    gpu_ids: list[str]
    started_at: float = 0.0  # wall-clock start of the compute (time.time() on the replica)
    provider: dict[str, Any] | None = None  # a hosted call (core.remote.record.ProviderCall)


LargeFormat = Literal["png", "jpeg", "tiff"]


@dataclass(frozen=True)
class HiresUpscaler:
    """The upscaler model a hires job's base goes through before the refine, and its tiling."""

    model_name: str
    scale: int  # the model's output size / input size
    tile_size: int  # source pixels per tile
    padding: int  # source pixels of context around each tile, cropped after
    replica_requests: int = 0  # its max_ongoing_requests (0: unknown): calls in flight


@dataclass
class LargeRenderJob:
    """A large-format render for the tile router (hires refine or direct tiled txt2img)."""

    job_id: str
    model_name: str
    prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    tile_size: int
    native_resolution: int
    align: int
    output_key: str
    mode: Literal["hires", "tiled", "fused"] = "hires"
    negative_prompt: str = ""
    strength: float = 0.35
    overlap: int | None = None
    base_image: np.ndarray | None = field(default=None, repr=False)  # (h, w, 3) uint8
    format: LargeFormat = "png"
    dpi: int = 300
    max_in_flight: int = 32
    max_attempts: int = 3
    colour_match: bool = True
    blend: Literal["feather", "multiband"] = "feather"
    fuse: FuseMode = "gaussian"  # fused mode: weights of overlapping predictions
    tiles_per_call: int = 1  # fused mode: crops per denoiser call (a fixed grouping)
    decode_tile: int = 0  # fused mode: side of the VAE's decode tiles (0: tile_size)
    replica_requests: int = 0  # the model's max_ongoing_requests (0: unknown): calls in flight
    text: TextSpec | None = None  # copy composited into the finished canvas, then gated
    max_call_pixels: int = 0  # most pixels one integrated text call sends (0: the default)
    checkpoint: bool = False  # keep finished tiles in the store so a new attempt resumes
    base_model_name: str | None = None  # a hosted model draws the base; model_name refines it
    base_resolution: int = 0  # the base's side at about its area (0: native_resolution)
    upscaler: HiresUpscaler | None = None  # hires: the base's upscaler model (None: Lanczos)
    scheduler: str | None = None  # every tile's scheduler (None: the model's own)
    loras: tuple[tuple[str, float], ...] = ()  # every tile's adapters, (name, scale)
    metadata: ImageMetadata | None = None  # the run id and parameters the file carries
    preview: bool = False  # keep a live preview of the finished rows in the store (jobs)
    owner: str | None = None  # the tenant whose job it is (its preview carries it)

    def __post_init__(self) -> None:
        if not self.max_call_pixels:
            self.max_call_pixels = MAX_CALL_AREA * self.native_resolution**2


@dataclass
class UpscalerCalls:
    """A hires job's calls to its upscaler model, counted apart from its tile model's."""

    calls: int
    replicas_used: list[str]
    retries: int
    overload_waits: int

    def metrics(self) -> dict[str, float]:
        """The figures a run record keeps of them, named `upscaler_*`."""
        return {
            "upscaler_calls": self.calls,
            "upscaler_replicas_used": len(self.replicas_used),
            "upscaler_retries": self.retries,
            "upscaler_overload_waits": self.overload_waits,
        }


@dataclass
class LargeRenderResult:
    """What a finished large-format render produced and how."""

    job_id: str
    output_key: str
    output_bytes: int
    width: int
    height: int
    format: LargeFormat
    tiles: int
    redundancy: float
    seam_score: float
    replicas_used: list[str]
    max_concurrent_replicas: int
    retries: int
    splits: int
    base_size: tuple[int, int] | None
    timings: dict[str, float]
    typography: TypographyReport | None = None
    tiles_reused: int = 0  # pieces taken from an earlier attempt's checkpoints
    provider: dict[str, Any] | None = None  # the hosted call that drew the base, if one did
    overload_waits: int = 0  # calls that waited for room in the model's full queue
    replica_ramp_s: float = 0.0  # the first call's start to the last replica's first start
    tiles_cut: int = 0  # tiles cut from the upscaled canvas (a hires of strength 0), not drawn
    upscaler_calls: UpscalerCalls | None = None  # a hires job's upscaler model's calls, apart

    @property
    def tiles_rendered(self) -> int:
        """Tiles a model drew in this attempt (not reused from checkpoints, not cut)."""
        return self.tiles - self.tiles_reused - self.tiles_cut

    def metrics(self) -> dict[str, float]:
        """The figures a run record keeps of this render."""
        return {
            "seam_score": self.seam_score,
            "tiles": self.tiles,
            "tiles_rendered": self.tiles_rendered,
            "tiles_reused": self.tiles_reused,
            "tiles_cut": self.tiles_cut,
            "redundancy": self.redundancy,
            "replicas_used": len(self.replicas_used),
            "max_concurrent_replicas": self.max_concurrent_replicas,
            "replica_ramp_s": self.replica_ramp_s,
            "retries": self.retries,
            "overload_waits": self.overload_waits,
            "splits": self.splits,
            "output_bytes": self.output_bytes,
            **({} if self.upscaler_calls is None else self.upscaler_calls.metrics()),
        }


@dataclass
class UpscaleJob:
    """A tiled upscale for the tile router: `scale` is model_scale ** passes."""

    job_id: str
    model_name: str
    image: np.ndarray = field(repr=False)  # (h, w, 3) uint8 source
    scale: int
    model_scale: int
    tile_size: int
    padding: int
    output_key: str
    format: LargeFormat = "png"
    dpi: int = 300
    max_in_flight: int = 32
    max_attempts: int = 3
    replica_requests: int = 0  # the model's max_ongoing_requests (0: unknown): calls in flight
    checkpoint: bool = False  # keep finished tiles in the store so a new attempt resumes
    metadata: ImageMetadata | None = None  # the run id and parameters the file carries
    preview: bool = False  # keep a live preview of the finished rows in the store (jobs)
    owner: str | None = None  # the tenant whose job it is (its preview carries it)
    last_pass_source: tuple[int, int] | None = None  # (w, h) the last pass's source is resized to

    @property
    def passes(self) -> int:
        """How many chained passes of the model give `scale`."""
        passes, total = 0, 1
        while total < self.scale:
            total *= self.model_scale
            passes += 1
        return passes
