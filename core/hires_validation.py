"""The request rule of `hires_upscaler`, apart from `core.validation`.

A hires render's base is upscaled by Lanczos or by an upscaler model: the
request's `hires_upscaler` wins over the requested model's `hires.upscaler`.
Each check raises a `RequestError` naming `hires_upscaler`.
"""

from __future__ import annotations

from core.config import ClusterConfig, ModelConfig
from core.errors import RequestError
from core.hires_options import LANCZOS, upscaler_problem
from core.schemas import HiresUpscaler, RenderRequestBody

__all__ = ["check_single_pass_upscaler", "hires_upscaler", "resolve_hires_upscaler"]

FIELD = "hires_upscaler"


def resolve_hires_upscaler(
    body: RenderRequestBody, config: ClusterConfig, model: ModelConfig
) -> HiresUpscaler | None:
    """The upscaler model of a large render's base (None: Lanczos, or not a hires render):
    the request's `hires_upscaler`, else `model`'s (the requested model) `hires.upscaler`."""
    if body.mode in ("tiled", "fused"):
        if body.hires_upscaler is not None:
            raise RequestError(FIELD, f"is only used by hires renders, not mode {body.mode!r}")
        return None
    name = body.hires_upscaler if body.hires_upscaler is not None else model.hires.upscaler
    _check_name(name, config)
    return hires_upscaler(name, config)


def hires_upscaler(name: str, config: ClusterConfig) -> HiresUpscaler | None:
    """The upscaler model `name` of the config as a hires job carries it (None: 'lanczos')."""
    if name == LANCZOS:
        return None
    upscaler = config.models[name]
    options = upscaler.upscaler
    assert options is not None  # ModelConfig: family 'upscaler' has its options
    return HiresUpscaler(
        model_name=name,
        scale=options.scale,
        tile_size=options.tile_size,
        padding=options.context_padding,
        replica_requests=upscaler.max_ongoing_requests,
    )


def check_single_pass_upscaler(body: RenderRequestBody, config: ClusterConfig) -> None:
    """A one-call render: `hires_upscaler` is refused with mode 'single' and checked with
    'auto' (used only when a render of that request goes hires)."""
    if body.hires_upscaler is None:
        return
    if body.mode == "single":
        raise RequestError(FIELD, "is only used by hires renders, not mode 'single'")
    _check_name(body.hires_upscaler, config)


def _check_name(name: str, config: ClusterConfig) -> None:
    families = {model_name: model.family for model_name, model in config.models.items()}
    problem = upscaler_problem(name, families)
    if problem is not None:
        raise RequestError(FIELD, problem)
