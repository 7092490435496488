"""Check a render request against the cluster config, collecting every problem.

Sizes that are not a multiple of the model's latent factor are rejected (never
silently rounded), so a client always gets exactly the size it asked for.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from core.config import ClusterConfig, ModelConfig
from core.errors import RequestError
from core.imaging import decode_base64_image
from core.schemas import MAX_SEED, GenerateRequest, RenderRequestBody


@dataclass
class ResolvedRender:
    """A validated request: which model, and what to render."""

    model_name: str
    model: ModelConfig
    request: GenerateRequest
    format: str


def resolve_render(body: RenderRequestBody, config: ClusterConfig) -> ResolvedRender:
    """Validate `body` against the config and decode its images; raise `RequestError`."""
    limits = config.limits
    try:
        model_name = config.resolve_model(body.model, body.style)
    except KeyError as exc:
        raise RequestError("model" if body.model is not None else "style", exc.args[0]) from None
    model = config.models[model_name]
    if len(body.prompt) > limits.max_prompt_chars:
        raise RequestError(
            "prompt",
            f"is {len(body.prompt)} characters, over the limit of {limits.max_prompt_chars}",
        )
    init_image, mask = _decode_images(body, config)
    if init_image is not None and (body.width is None and body.height is None):
        height, width = init_image.shape[:2]
    else:
        width = body.width if body.width is not None else model.native_resolution
        height = body.height if body.height is not None else model.native_resolution
    check_size(width, height, model, config)
    steps = body.steps if body.steps is not None else model.default_steps
    if not 1 <= steps <= limits.max_steps:
        raise RequestError("steps", f"must be between 1 and {limits.max_steps}, got {steps}")
    if init_image is not None and init_image.shape[:2] != (height, width):
        raise RequestError(
            "init_image",
            f"is {init_image.shape[1]}x{init_image.shape[0]} but the render is "
            f"{width}x{height}; send an image of the render size or omit width/height",
        )
    mode = "inpaint" if mask is not None else "img2img" if init_image is not None else "txt2img"
    request = GenerateRequest(
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        width=width,
        height=height,
        steps=steps,
        guidance=body.guidance if body.guidance is not None else model.default_guidance,
        seed=body.seed if body.seed is not None else secrets.randbelow(MAX_SEED),
        mode=mode,
        strength=body.strength,
        init_image=init_image,
        mask=mask,
    )
    return ResolvedRender(model_name, model, request, body.format)


def check_size(width: int, height: int, model: ModelConfig, config: ClusterConfig) -> None:
    """Reject sizes that are non-positive, over the limits, or off the latent grid."""
    limits = config.limits
    for name, value, limit in (
        ("width", width, limits.max_width),
        ("height", height, limits.max_height),
    ):
        if value < model.latent_factor:
            raise RequestError(name, f"must be at least {model.latent_factor}, got {value}")
        if value > limit:
            raise RequestError(name, f"must be at most {limit}, got {value}")
        factor = model.latent_factor
        if value % factor:
            below = value // factor * factor
            raise RequestError(
                name,
                f"must be a multiple of {factor} (the model's latent factor); got {value}, "
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
