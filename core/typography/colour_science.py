"""Colour measures of the gate: WCAG relative luminance and contrast, CIELAB and ΔE00."""

from __future__ import annotations

import numpy as np

__all__ = [
    "RGB",
    "contrast_ratio",
    "delta_e_2000",
    "parse_hex",
    "relative_luminance",
    "srgb_to_lab",
    "to_hex",
]

RGB = tuple[int, int, int]

_CHANNEL = np.arange(256, dtype=np.float64) / 255
_LINEAR = np.where(_CHANNEL <= 0.04045, _CHANNEL / 12.92, ((_CHANNEL + 0.055) / 1.055) ** 2.4)
"""sRGB uint8 → linear light, as a lookup table."""
_LUMA = np.array([0.2126, 0.7152, 0.0722])
_LINEAR_32, _LUMA_32 = _LINEAR.astype(np.float32), _LUMA.astype(np.float32)
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def parse_hex(colour: str) -> RGB:
    """'#rrggbb' → (r, g, b)."""
    value = int(colour.removeprefix("#"), 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def to_hex(rgb: RGB) -> str:
    """(r, g, b) → '#rrggbb'."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def relative_luminance(pixels: np.ndarray) -> np.ndarray:
    """WCAG relative luminance in [0, 1] of uint8 RGB pixels (..., 3), float32."""
    return _LINEAR_32[np.asarray(pixels, np.uint8)] @ _LUMA_32


def contrast_ratio(luminance_a: np.ndarray | float, luminance_b: np.ndarray | float) -> np.ndarray:
    """WCAG contrast ratio (1 to 21) of two relative luminances, element-wise."""
    a, b = np.asarray(luminance_a), np.asarray(luminance_b)
    return (np.maximum(a, b) + 0.05) / (np.minimum(a, b) + 0.05)


def srgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of uint8 sRGB pixels (..., 3), float64."""
    xyz = (_LINEAR[np.asarray(pixels, np.uint8)] @ _RGB_TO_XYZ.T) / _WHITE_D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference of CIELAB arrays (..., 3) (Sharma et al., 2005)."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    chroma_zero = (c1p * c2p) == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma_zero, 0, dh)
    d_l, d_c = l2 - l1, c2p - c1p
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_mean, cp_mean = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = (
        np.where(np.abs(h1p - h2p) > 180, np.where(h_sum < 360, h_sum + 360, h_sum - 360), h_sum)
        / 2
    )
    h_mean = np.where(chroma_zero, h_sum, h_mean)
    t = (
        1
        - 0.17 * np.cos(np.radians(h_mean - 30))
        + 0.24 * np.cos(np.radians(2 * h_mean))
        + 0.32 * np.cos(np.radians(3 * h_mean + 6))
        - 0.20 * np.cos(np.radians(4 * h_mean - 63))
    )
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_t = (
        -2
        * np.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7))
        * np.sin(np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2))))
    )
    return np.sqrt(
        (d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h)
    )
