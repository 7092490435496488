"""Check a render request against the cluster config; the first problem raises.

Each check raises a `RequestError` naming the field to fix, so a client learns
of one problem per request (the first found), not of every problem at once.

Single-pass sizes that are not a multiple of the model's latent factor are rejected
(never silently rounded), so a client always gets exactly the size it asked for. Large
renders (hires, tiled, fused, upscale) take any size: their tiles stay on the latent
grid and the output is cut to exactly the size asked.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np

from core.config import ClusterConfig, ModelConfig
from core.errors import RequestError
from core.fused_validation import check_fused, check_fused_overlap, fused_tiles_per_call
from core.hires_validation import check_single_pass_upscaler, resolve_hires_upscaler
from core.imaging import decode_base64_image
from core.sampling_validation import sampling_fields
from core.schemas import (
    MAX_CALL_AREA,
    MAX_SEED,
    GenerateRequest,
    LargeRenderJob,
    RenderRequestBody,
    UpscaleJob,
    UpscaleRequestBody,
)
from core.typography.quiet import quiet_negative_prompt
from core.typography.schema import TextBox, TextSpec
from core.typography.typeset import typeset_spec

DEFAULT_IMG2IMG_STRENGTH = 0.75


def max_call_pixels(model: ModelConfig) -> int:
    """The most pixels one integrated text pass sends to `model` in one call."""
    return model.max_pixels_per_call or MAX_CALL_AREA * model.native_resolution**2


LARGE_FORMATS = ("png", "jpeg", "tiff")
JPEG_MAX_SIDE = 65535


@dataclass
class ResolvedRender:
    """A validated request: which model, and what to render."""

    model_name: str
    model: ModelConfig
    request: GenerateRequest
    format: str
    text: TextSpec | None = None


def resolve_render(body: RenderRequestBody, config: ClusterConfig) -> ResolvedRender:
    """Validate `body` against the config and decode its images; raise `RequestError`."""
    limits = config.limits
    model_name, model = _model_and_prompt(body, config)
    if body.base_image is not None:
        raise RequestError("base_image", "is only used by hires and fused renders")
    if body.fuse is not None:
        raise RequestError("fuse", "is only used by fused renders (mode 'fused')")
    check_single_pass_upscaler(body, config)
    init_image, mask = _decode_images(body, config)
    if init_image is not None and (body.width is None and body.height is None):
        height, width = init_image.shape[:2]
    else:
        width = body.width if body.width is not None else model.native_resolution
        height = body.height if body.height is not None else model.native_resolution
    check_size(width, height, model, config)
    _check_one_call(width, height, model, "width" if init_image is None else "init_image")
    steps = body.steps if body.steps is not None else model.default_steps
    if not 1 <= steps <= limits.max_steps:
        raise RequestError("steps", f"must be between 1 and {limits.max_steps}, got {steps}")
    strength = body.strength if body.strength is not None else DEFAULT_IMG2IMG_STRENGTH
    if init_image is not None:
        check_denoising_steps(steps, strength)
    if init_image is not None and init_image.shape[:2] != (height, width):
        raise RequestError(
            "init_image",
            f"is {init_image.shape[1]}x{init_image.shape[0]} but the render is "
            f"{width}x{height}; send an image of the render size or omit width/height",
        )
    mode = "inpaint" if mask is not None else "img2img" if init_image is not None else "txt2img"
    text = resolve_text(body.text_boxes, config, (width, height))
    request = GenerateRequest(
        prompt=body.prompt,
        negative_prompt=_negative_prompt(body.negative_prompt, text),
        width=width,
        height=height,
        steps=steps,
        guidance=body.guidance if body.guidance is not None else model.default_guidance,
        seed=body.seed if body.seed is not None else secrets.randbelow(MAX_SEED),
        mode=mode,
        strength=strength,
        init_image=init_image,
        mask=mask,
        **sampling_fields(body, config, model_name, model),
    )
    return ResolvedRender(model_name, model, request, body.format, text)


def resolve_text(
    boxes: list[TextBox], config: ClusterConfig, size: tuple[int, int], field: str = "text_boxes"
) -> TextSpec | None:
    """The render's `TextSpec`; every box is typeset at the final `size` now (422 if one cannot)."""
    if not boxes:
        return None
    limit = config.typography.max_boxes
    if len(boxes) > limit:
        raise RequestError(field, f"holds {len(boxes)} boxes, over the limit of {limit}")
    spec = config.typography.spec(boxes, field)
    typeset_spec(spec, size)
    return spec


def _negative_prompt(negative_prompt: str, text: TextSpec | None) -> str:
    """With text boxes, the quiet-zone terms keep the model's own letters out."""
    return negative_prompt if text is None else quiet_negative_prompt(negative_prompt)


def _model_and_prompt(body: RenderRequestBody, config: ClusterConfig) -> tuple[str, ModelConfig]:
    try:
        model_name = config.resolve_model(body.model, body.style)
    except KeyError as exc:
        raise RequestError("model" if body.model is not None else "style", exc.args[0]) from None
    if config.models[model_name].family == "upscaler":
        raise RequestError(
            "model", f"model {model_name!r} is an upscaler; send it to /v1/upscale instead"
        )
    limit = config.limits.max_prompt_chars
    for field in ("prompt", "negative_prompt"):
        if len(getattr(body, field)) > limit:
            length = len(getattr(body, field))
            raise RequestError(field, f"is {length} characters, over the limit of {limit}")
    return model_name, config.models[model_name]


def _check_one_call(width: int, height: int, model: ModelConfig, field: str) -> None:
    """One model call never exceeds the model's call limit (4x native area by default)."""
    if model.family != "remote" and width * height > max_call_pixels(model):
        raise RequestError(
            field,
            f"{width}x{height} is over one model call's limit of {max_call_pixels(model)} "
            "pixels (max_pixels_per_call, else 4x the native area); use mode 'auto' or "
            "'hires' (tiled), or send width and height",
        )


def check_denoising_steps(steps: int, strength: float) -> None:
    """img2img and inpaint denoise int(steps x strength) steps: at least one is needed."""
    if int(steps * strength) < 1:
        raise RequestError(
            "steps",
            f"steps x strength = {steps} x {strength:g} = {steps * strength:g} leaves no "
            f"denoising step; use steps >= {math.ceil(1 / strength) if strength > 0 else 1} "
            "or a higher strength",
        )


def _refiner(
    body: RenderRequestBody, config: ClusterConfig, model_name: str, model: ModelConfig
) -> tuple[str | None, str, ModelConfig]:
    """(hosted base model or None, tile model, its config) of a large render.

    A hosted model (family 'remote') draws the base image in one call; its
    `remote.refine_model`, a local model, refines it tile by tile.
    """
    if model.family != "remote":
        return None, model_name, model
    refiner = model.remote.refine_model if model.remote is not None else None
    if refiner is None:
        raise RequestError(
            "mode",
            f"model {model_name!r} is hosted: large renders refine tile by tile on a local "
            f"model; set models.{model_name}.remote.refine_model, send this model's image to "
            "a local one as base_image, or use a pipeline",
        )
    if body.mode == "tiled":
        raise RequestError(
            "mode",
            f"model {model_name!r} is hosted: 'tiled' draws every tile locally from noise; "
            "use 'hires' or 'fused' (a hosted base image refined by "
            f"{refiner!r})",
        )
    base = None if body.base_image is not None else model_name
    return base, refiner, config.models[refiner]


SINGLE_PASS_AREA = 1.25
"""x native_resolution**2: the most pixels an 'auto' render sends to one model call."""


def single_pass_pixels(model: ModelConfig) -> int:
    """The largest 'auto' render done in one model call.

    1.25 x the native area, so aspect ratios kept at the native area stay one call
    (beyond it a model repeats its subject), and never over `max_pixels_per_call`.
    """
    area = int(SINGLE_PASS_AREA * model.native_resolution**2)
    return min(area, model.max_pixels_per_call or area)


def is_large(body: RenderRequestBody, config: ClusterConfig) -> bool:
    """Whether the request goes through the tile router rather than one model call.

    The one rule for every caller (API, pipelines' callers, campaigns): 'hires' and
    'tiled' and 'fused' are large, 'single' is not, 'auto' is large over `single_pass_pixels`.
    """
    if body.mode in ("hires", "tiled", "fused"):
        return True
    if body.mode == "single":
        return False
    try:
        model = config.models[config.resolve_model(body.model, body.style)]
    except KeyError:
        return False  # resolve_render reports the unknown name
    if model.family == "remote":
        return False  # one provider call at any size, resized to exact
    native = model.native_resolution
    area = (body.width or native) * (body.height or native)
    return area > single_pass_pixels(model)


def resolve_large(
    body: RenderRequestBody, config: ClusterConfig, job_id: str, output_key: str
) -> tuple[LargeRenderJob, ModelConfig]:
    """Validate a large-format request into a `LargeRenderJob` and the config of the model
    its record names (a hosted model drawing the base, else the tile model); raise
    `RequestError`."""
    requested, hosted = _model_and_prompt(body, config)
    base_model, model_name, model = _refiner(body, config, requested, hosted)
    for name in ("init_image", "mask"):
        if getattr(body, name) is not None:
            raise RequestError(name, "is not used by large-format renders (use base_image)")
    if body.base_image is not None and body.mode == "tiled":
        raise RequestError("base_image", "is only used by hires and fused renders, not 'tiled'")
    if body.width is None or body.height is None:
        raise RequestError("width", "large-format renders need both width and height")
    check_size(body.width, body.height, model, config, on_grid=False)
    check_fused(body, model_name, model)
    if body.format not in LARGE_FORMATS:
        raise RequestError(
            "format", f"large-format renders are written as {', '.join(LARGE_FORMATS)}"
        )
    if body.format == "jpeg" and max(body.width, body.height) > JPEG_MAX_SIDE:
        raise RequestError("format", f"JPEG sides are limited to {JPEG_MAX_SIDE}; use png or tiff")
    steps = body.steps if body.steps is not None else model.default_steps
    if not 1 <= steps <= config.limits.max_steps:
        raise RequestError("steps", f"must be between 1 and {config.limits.max_steps}, got {steps}")
    tile = _large_tile(body, model)
    strength = _large_strength(body, config, model)  # 0: hires without a refine call
    if strength > 0 and (body.mode not in ("tiled", "fused") or body.base_image is not None):
        check_denoising_steps(steps, strength)  # steps x strength
    text = resolve_text(body.text_boxes, config, (body.width, body.height))
    base = None
    if body.base_image is not None:
        limits = config.limits
        base = decode_base64_image(
            body.base_image, "base_image", limits.max_upload_bytes, limits.max_upload_pixels
        )
    job = LargeRenderJob(
        job_id=job_id,
        model_name=model_name,
        prompt=body.prompt,
        negative_prompt=_negative_prompt(body.negative_prompt, text),
        width=body.width,
        height=body.height,
        steps=steps,
        guidance=body.guidance if body.guidance is not None else model.default_guidance,
        seed=body.seed if body.seed is not None else secrets.randbelow(MAX_SEED),
        tile_size=tile,
        native_resolution=model.native_resolution,
        align=model.latent_factor if body.mode == "fused" else model.size_step,
        output_key=output_key,
        mode=body.mode if body.mode in ("tiled", "fused") else "hires",
        strength=strength,
        overlap=body.overlap,
        base_image=base,
        format=body.format,
        dpi=body.dpi,
        max_in_flight=config.tiling.max_in_flight,
        max_attempts=config.tiling.max_attempts,
        text=text,
        max_call_pixels=max_call_pixels(model),
        fuse=body.fuse or "gaussian",
        replica_requests=model.max_ongoing_requests,
        tiles_per_call=fused_tiles_per_call(model, tile),
        base_model_name=base_model,
        base_resolution=hosted.native_resolution if base_model else 0,
        upscaler=resolve_hires_upscaler(body, config, hosted),
        **sampling_fields(body, config, model_name, model),
    )
    return job, hosted if base_model else model


def _large_strength(body: RenderRequestBody, config: ClusterConfig, model: ModelConfig) -> float:
    """The request's strength, else img2img's default (fused) or the tile model's refine
    strength (hires: its `hires.refine_strength`, else `tiling.refine_strength`)."""
    if body.strength is not None:
        return body.strength
    if body.mode == "fused":
        return DEFAULT_IMG2IMG_STRENGTH
    return model.hires.strength(config.tiling.refine_strength)


def _large_tile(body: RenderRequestBody, model: ModelConfig) -> int:
    """The tile side of a large render (default: native), its overlap checked."""
    tile = body.tile_size if body.tile_size is not None else model.native_resolution
    most = min(4096, math.isqrt(MAX_CALL_AREA) * model.native_resolution)
    most -= most % model.latent_factor
    if tile < 4 * model.latent_factor or tile % model.latent_factor or tile > most:
        raise RequestError(
            "tile_size",
            f"must be a multiple of {model.latent_factor} between {4 * model.latent_factor} "
            f"and {most} (one model call's limit), got {tile}",
        )
    if body.overlap is None:
        return tile
    if body.mode == "fused":
        check_fused_overlap(body.overlap, tile, model.latent_factor)
    elif body.overlap >= tile // 2:
        raise RequestError(
            "overlap", f"must be less than half the tile ({tile // 2}), got {body.overlap}"
        )
    return tile


def check_size(
    width: int, height: int, model: ModelConfig, config: ClusterConfig, on_grid: bool = True
) -> None:
    """Reject sizes that are too small, over the limits, or (`on_grid`: single-pass renders)
    off the latent grid."""
    limits = config.limits
    for name, value, limit in (
        ("width", width, limits.max_width),
        ("height", height, limits.max_height),
    ):
        if value < model.latent_factor:
            raise RequestError(name, f"must be at least {model.latent_factor}, got {value}")
        if value > limit:
            raise RequestError(name, f"must be at most {limit}, got {value}")
        factor = model.size_step
        if on_grid and value % factor:
            below = value // factor * factor
            why = "the model's latent factor"
            if factor != model.latent_factor:
                why = f"{why}, {model.latent_factor}, and 8, as diffusers' pipelines ask"
            raise RequestError(
                name,
                f"must be a multiple of {factor} ({why}); got {value}, "
                f"nearest valid sizes are {below} and {below + factor}",
            )
    if width * height > limits.max_pixels:
        raise RequestError(
            "width",
            f"{width}x{height} = {width * height} pixels is over the limit of {limits.max_pixels}",
        )


def _decode_images(
    body: RenderRequestBody, config: ClusterConfig
) -> tuple[np.ndarray | None, np.ndarray | None]:
    limits = config.limits
    if body.mask is not None and body.init_image is None:
        raise RequestError("mask", "needs an init_image to paint into")
    init_image = mask = None
    if body.init_image is not None:
        init_image = decode_base64_image(
            body.init_image, "init_image", limits.max_upload_bytes, limits.max_upload_pixels
        )
    if body.mask is not None:
        mask = decode_base64_image(
            body.mask, "mask", limits.max_upload_bytes, limits.max_upload_pixels, mode="L"
        )
        if mask.shape != init_image.shape[:2]:
            raise RequestError(
                "mask",
                f"is {mask.shape[1]}x{mask.shape[0]} but init_image is "
                f"{init_image.shape[1]}x{init_image.shape[0]}; they must be the same size",
            )
        mask = np.where(mask >= 128, 255, 0).astype(np.uint8)
    return init_image, mask


MAX_UPSCALE_PASSES = 3


def resolve_upscale(
    body: UpscaleRequestBody, config: ClusterConfig, job_id: str, output_key: str
) -> tuple[UpscaleJob, ModelConfig]:
    """Validate an upscale request into an `UpscaleJob`; raise `RequestError`."""
    upscalers = [name for name, m in config.models.items() if m.family == "upscaler"]
    name = body.model if body.model is not None else (upscalers[0] if upscalers else None)
    if name is None or name not in upscalers:
        raise RequestError(
            "model",
            f"{name!r} is not an upscaler model (upscalers: {', '.join(upscalers) or 'none'})",
        )
    model = config.models[name]
    options = model.upscaler
    scales = [options.scale**k for k in range(1, MAX_UPSCALE_PASSES + 1)]
    if body.scale not in scales:
        raise RequestError(
            "scale", f"{name} upscales by {', '.join(map(str, scales))}; got {body.scale}"
        )
    limits = config.limits
    image = decode_base64_image(
        body.image, "image", limits.max_upload_bytes, limits.max_upload_pixels
    )
    height, width = image.shape[:2]
    out_w, out_h = width * body.scale, height * body.scale
    for field, value, limit in (
        ("width", out_w, limits.max_width),
        ("height", out_h, limits.max_height),
    ):
        if value > limit:
            raise RequestError(
                "scale", f"output {field} {value} would be over the limit of {limit}"
            )
    if out_w * out_h > limits.max_pixels:
        raise RequestError(
            "scale", f"output {out_w}x{out_h} would be over the limit of {limits.max_pixels} pixels"
        )
    if body.format == "jpeg" and max(out_w, out_h) > JPEG_MAX_SIDE:
        raise RequestError("format", f"JPEG sides are limited to {JPEG_MAX_SIDE}; use png or tiff")
    job = UpscaleJob(
        job_id=job_id,
        model_name=name,
        image=image,
        scale=body.scale,
        model_scale=options.scale,
        tile_size=options.tile_size,
        padding=options.context_padding,
        output_key=output_key,
        format=body.format,
        dpi=body.dpi,
        max_in_flight=config.tiling.max_in_flight,
        max_attempts=config.tiling.max_attempts,
        replica_requests=model.max_ongoing_requests,
    )
    return job, model
