"""The request rules of fused renders (`"mode": "fused"`), apart from `core.validation`.

Each check raises a `RequestError` naming the field to fix.
"""

from __future__ import annotations

from core.config import ModelConfig
from core.errors import RequestError
from core.largeformat.fused_schemas import FUSED_FAMILIES
from core.schemas import RenderRequestBody

__all__ = [
    "FUSED_TILES_PER_CALL",
    "check_fused",
    "check_fused_overlap",
    "fused_tiles_per_call",
]


def check_fused(body: RenderRequestBody, model_name: str, model: ModelConfig) -> None:
    """`fuse` only with mode 'fused', and a fused render only on a model whose replicas
    answer the fused calls (a UNet family)."""
    if body.mode != "fused":
        if body.fuse is not None:
            raise RequestError("fuse", "is only used by fused renders (mode 'fused')")
        return
    if model.family not in FUSED_FAMILIES:
        raise RequestError(
            "mode",
            f"fused renders need a model of family {' or '.join(FUSED_FAMILIES)}; "
            f"model {model_name!r} is family {model.family!r} (use mode 'hires' or 'tiled')",
        )


FUSED_TILES_PER_CALL = 2
"""Tiles of a fused render per denoiser call: halves the calls (and the router's per-call
cost) at a batch of 4 with guidance; see bench/bench_fused.py."""


def fused_tiles_per_call(model: ModelConfig, tile: int) -> int:
    """`FUSED_TILES_PER_CALL`, or 1 where that many tiles are over the model's call limit.

    A function of the request and the config only, so a job's grouping (and its bytes)
    never depends on its replicas."""
    limit = model.max_pixels_per_call
    fits = limit is None or FUSED_TILES_PER_CALL * tile * tile <= limit
    return FUSED_TILES_PER_CALL if fits else 1


def check_fused_overlap(overlap: int, tile: int, factor: int) -> None:
    """A fused overlap is on the latent grid and leaves a stride of at least one cell."""
    if overlap % factor or overlap > tile - factor:
        raise RequestError(
            "overlap",
            f"a fused overlap must be a multiple of {factor} (the latent factor) and at most "
            f"{tile - factor} for tiles of {tile}, got {overlap}",
        )
