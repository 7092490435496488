"""Pixel-level checks of the gate: are the glyphs the ink, and where the typesetting put them?

In overlay mode the pixels must be what was composited (ΔE00 within
`max_delta_e`), overall and in the worst half-cap window, so that one wrong
character cannot hide in a long copy: OCR alone passes many one-character
swaps (l/I, O/0), this check does not. Given the scene from before the
overlay, every pixel of the glyphs and their ring is compared with the
composite (an l shown for an I adds ink where there should be none); without
it, the fully covered glyph pixels are compared with the ink. In integrated
mode the scene is blended over the text, so the seen glyph mask is compared
with the typeset one by IoU instead.
"""

from __future__ import annotations

import numpy as np

from core.typography.colour_science import delta_e_2000, srgb_to_lab
from core.typography.geometry import PixelBox
from core.typography.results import GateCheck
from core.typography.schema import GateThresholds

__all__ = ["mask_fidelity", "matching_pixels", "overlay_fidelity", "placement", "seen_glyphs"]


def matching_pixels(
    pixels: np.ndarray, intended: np.ndarray, where: np.ndarray, max_delta_e: float
) -> np.ndarray:
    """Pixels in `where` within `max_delta_e` (ΔE00) of `intended` (bool, `where`'s shape).

    `intended` is one colour (3,) or an image of `pixels`' shape; exact matches
    skip the colour maths, so a clean overlay costs one comparison per pixel.
    """
    intended = np.asarray(intended, np.uint8)
    matched = np.all(pixels == intended, axis=-1) & where
    inexact = where & ~matched
    if inexact.any():
        target = intended if intended.ndim == 1 else intended[inexact]
        matched[inexact] = (
            delta_e_2000(srgb_to_lab(pixels[inexact]), srgb_to_lab(target)) <= max_delta_e
        )
    return matched


def overlay_fidelity(
    where: np.ndarray, matched: np.ndarray, cap_height: int, t: GateThresholds, against: str
) -> GateCheck:
    """Share of the checked pixels (`where`) that match, overall and in the worst window."""
    overall = float(matched.sum() / max(1, where.sum()))
    worst = _worst_window(where, matched, cap_height)
    return GateCheck(
        name="fidelity",
        passed=overall >= t.min_ink_fraction and worst >= t.min_local_ink_fraction,
        value=round(overall, 5),
        threshold=t.min_ink_fraction,
        detail=f"pixels within ΔE00 {t.max_delta_e:g} of {against}; worst half-cap window "
        f"{worst:.3f} (needs {t.min_local_ink_fraction:g})",
    )


def mask_fidelity(seen: np.ndarray, reference: np.ndarray, t: GateThresholds) -> GateCheck:
    """IoU of the seen glyph mask with the typeset one."""
    union = np.logical_or(seen, reference).sum()
    iou = float(np.logical_and(seen, reference).sum() / union) if union else 0.0
    return GateCheck(
        name="fidelity",
        passed=iou >= t.min_mask_iou,
        value=round(iou, 4),
        threshold=t.min_mask_iou,
        detail="glyph-mask IoU with the typeset reference",
    )


def seen_glyphs(
    pixels: np.ndarray, near: np.ndarray, core: np.ndarray, ring: np.ndarray
) -> np.ndarray:
    """Pixels `near` the glyphs whose colour is nearer the seen ink than the seen ring (bool)."""
    lab = srgb_to_lab(pixels[near])
    ink_lab = np.median(srgb_to_lab(pixels[core]), axis=0)
    ring_lab = np.median(srgb_to_lab(pixels[ring]), axis=0) if ring.any() else -ink_lab
    seen = np.zeros(near.shape, bool)
    seen[near] = np.linalg.norm(lab - ink_lab, axis=-1) < np.linalg.norm(lab - ring_lab, axis=-1)
    return seen


def placement(
    seen: np.ndarray, reference: np.ndarray, cap_height: int, t: GateThresholds
) -> GateCheck:
    """IoU of the box of the seen glyph pixels with the box of the typeset ones."""
    iou = _inked_box(seen, cap_height).iou(_inked_box(reference, cap_height))
    return GateCheck(
        name="placement",
        passed=iou >= t.min_placement_iou,
        value=round(iou, 4),
        threshold=t.min_placement_iou,
        detail="IoU of the seen ink box with the typeset ink box",
    )


def _worst_window(where: np.ndarray, good: np.ndarray, cap: int) -> float:
    """The lowest good/where share over half-cap windows holding enough checked pixels."""
    side, stride = max(4, cap // 2), max(1, cap // 6)
    totals, goods = _window_sums(where, side, stride), _window_sums(good, side, stride)
    enough = totals >= max(4, 0.05 * side * side)
    if not enough.any():
        return 1.0
    return float((goods[enough] / totals[enough]).min())


def _window_sums(mask: np.ndarray, side: int, stride: int) -> np.ndarray:
    """Counts of `mask` in side x side windows on a grid of `stride`, by an integral image."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int32)
    integral[1:, 1:] = mask.cumsum(axis=0, dtype=np.int32).cumsum(axis=1, dtype=np.int32)
    ys = np.arange(0, max(1, mask.shape[0] - side + 1), stride)
    xs = np.arange(0, max(1, mask.shape[1] - side + 1), stride)
    y0, x0 = ys[:, None], xs[None, :]
    y1 = np.minimum(ys + side, mask.shape[0])[:, None]
    x1 = np.minimum(xs + side, mask.shape[1])[None, :]
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def _inked_box(mask: np.ndarray, cap: int) -> PixelBox:
    """Box of the rows and columns holding at least cap/10 mask pixels (ignores specks)."""
    least = max(1, round(cap / 10))
    rows = np.flatnonzero(mask.sum(axis=1) >= least)
    cols = np.flatnonzero(mask.sum(axis=0) >= least)
    if not rows.size or not cols.size:
        return PixelBox(0, 0, 0, 0)
    return PixelBox(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
