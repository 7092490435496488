"""Deliver a render's text boxes: typeset, composite after the last model pass, gate.

`TextSpec` (`core.typography.schema`) is what a render carries about its copy
(the boxes, the font directory, the gate's thresholds); the report types are
in `core.typography.results`. After the last model pass:

    report = await deliver_text(canvas, spec, img2img)   # canvas changed in place

composites every box (contrast solved on the scene under it), gives
`integrated` boxes their masked img2img pass through `img2img` when there is
one (a box whose integrated render fails the gate, or whose region is too
large for one model call, is delivered as overlay), gates every box on what
the canvas now shows, and checks the rest of the image for stray text. The
canvas may be a memory map of a billboard's spool: only the boxes' regions
are read in full, and the integrated pass sees only its box's region. Nothing
here imports Ray.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from core.errors import TileError, UnsupportedCapability
from core.typography.compose import composite_into
from core.typography.contrast import solve_contrast
from core.typography.gate import gate_box, stray_text_check
from core.typography.geometry import PixelBox
from core.typography.modes import delivery_mode, integrated_strength, integration_box
from core.typography.results import (
    BoxGateResult,
    BoxReport,
    GateCheck,
    Treatment,
    TypographyReport,
)
from core.typography.schema import TextBox, TextSpec
from core.typography.typeset import TypesetText, typeset_spec

__all__ = [
    "BoxReport",
    "Img2Img",
    "IntegrationUnavailable",
    "STRAY_TEXT_MAX_SIDE",
    "TextSpec",
    "TypographyReport",
    "aligned",
    "compose_boxes",
    "deliver_text",
    "inpaint_pass",
]

STRAY_TEXT_MAX_SIDE = 1024
"""The stray-text OCR reads the output scaled down to at most this many pixels per side."""

Img2Img = Callable[[np.ndarray, np.ndarray, float], Awaitable[np.ndarray]]
"""(region, mask (uint8, 255 = repaint), strength) -> the region repainted under the mask.

The region is a box's neighbourhood cut from the canvas, at any size: wrap a model
call that needs sizes on its latent grid in `aligned`. Raise `IntegrationUnavailable`
when the region cannot be repainted in one call (the box is then delivered as overlay).
"""


class IntegrationUnavailable(Exception):
    """The integrated pass cannot run on this region (too large for one model call, ...)."""


def aligned(call: Img2Img, align: int) -> Img2Img:
    """`call`, which takes sizes that are multiples of `align`, for regions of any size.

    The region is padded at its right and bottom by repeating its edge (the pad is
    not repainted), and the result is cropped back.
    """

    async def padded_call(region: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
        height, width = mask.shape
        pad_h, pad_w = -height % align, -width % align
        pixels = np.pad(region, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        wide_mask = np.pad(mask, ((0, pad_h), (0, pad_w)))
        return (await call(pixels, wide_mask, strength))[:height, :width]

    return padded_call


Request = TypeVar("Request")
"""A model call's request: `core.schemas.GenerateRequest`, not imported (core.schemas
imports this package's data types, and the packages of core form no cycle)."""


def inpaint_pass(
    render: Callable[[Request], Awaitable[np.ndarray]],
    request: Request,
    align: int,
    max_pixels: int,
) -> Img2Img:
    """The integrated pass as a masked inpaint by `render`, with `request`'s prompt and seed.

    `request` is a `GenerateRequest`; each call renders a copy of it in inpaint mode
    at the region's size. `align` is the model's latent factor; regions over
    `max_pixels` (one call's worth), calls that fail on a tile (out of memory, ...) and
    models that cannot inpaint (a hosted model without an edit API) are
    `IntegrationUnavailable`.
    """

    async def call(region: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
        height, width = mask.shape
        if width * height > max_pixels:
            raise IntegrationUnavailable(
                f"its region ({width}x{height}) is over one model call ({max_pixels} pixels)"
            )
        repaint = dataclasses.replace(
            request,  # a GenerateRequest: a dataclass
            mode="inpaint",
            width=width,
            height=height,
            init_image=region,
            mask=mask,
            strength=strength,
        )
        try:
            return await render(repaint)
        except (TileError, UnsupportedCapability) as exc:  # hosted models without inpaint
            raise IntegrationUnavailable(f"the integrated pass failed ({exc})") from None

    return aligned(call, align)


@dataclass
class _Composed:
    box: TextBox
    text: TypesetText
    treatment: Treatment
    scene: np.ndarray  # the region before the overlay


def compose_boxes(canvas: np.ndarray, spec: TextSpec) -> list[_Composed]:
    """Typeset every box at the canvas size and composite it into `canvas` in place."""
    height, width = canvas.shape[:2]
    composed = []
    for box, text in zip(spec.boxes, typeset_spec(spec, (width, height)), strict=True):
        scene = np.array(canvas[text.region.slices()], copy=True)
        treatment = solve_contrast(scene, text, box, target=spec.thresholds.min_contrast)
        composite_into(canvas, text, treatment)
        composed.append(_Composed(box, text, treatment, scene))
    return composed


async def deliver_text(
    canvas: np.ndarray, spec: TextSpec, img2img: Img2Img | None = None
) -> TypographyReport:
    """Composite, integrate (with `img2img`), and gate every box of `canvas` in place."""
    composed = await asyncio.to_thread(compose_boxes, canvas, spec)
    integrated: dict[int, BoxGateResult] = {}
    notes: dict[int, str] = {}
    for index, item in enumerate(composed):
        if item.box.mode != "integrated":
            continue
        if img2img is None:
            notes[index] = "no img2img pass on this render path; delivered as overlay"
            continue
        try:
            integrated[index] = await _integrate(canvas, item, spec, img2img)
        except IntegrationUnavailable as exc:
            notes[index] = f"{exc}; delivered as overlay"
            continue
        if not integrated[index].passed:
            notes[index] = "the integrated render failed the gate; delivered as overlay"
    return await asyncio.to_thread(_gate_all, canvas, composed, spec, integrated, notes)


async def _integrate(
    canvas: np.ndarray, item: _Composed, spec: TextSpec, img2img: Img2Img
) -> BoxGateResult:
    """The masked img2img pass over one box's neighbourhood, gated; pasted in if it passed."""
    height, width = canvas.shape[:2]
    area = integration_box(item.text)
    context = area.expanded(max(8, area.height // 4)).union(item.text.region)
    crop = context.clipped(width, height)
    mask = np.zeros((crop.height, crop.width), np.uint8)
    mask[area.shifted(-crop.x0, -crop.y0).slices()] = 255
    region = np.array(canvas[crop.slices()], copy=True)
    repainted = await img2img(region, mask, integrated_strength(item.box.softness))
    verdict = await asyncio.to_thread(
        gate_box,
        repainted,
        item.box,
        item.text,
        item.treatment,
        thresholds=spec.thresholds,
        origin=(crop.x0, crop.y0),
    )
    if verdict.passed:
        canvas[area.slices()] = repainted[area.shifted(-crop.x0, -crop.y0).slices()]
    return verdict


def _gate_all(
    canvas: np.ndarray,
    composed: Sequence[_Composed],
    spec: TextSpec,
    integrated: dict[int, BoxGateResult],
    notes: dict[int, str],
) -> TypographyReport:
    reports = []
    for index, item in enumerate(composed):
        verdict = integrated.get(index)
        delivered = delivery_mode(item.box, verdict)
        if delivered == "integrated":
            assert verdict is not None
            final = verdict
        else:
            final = gate_box(
                canvas,
                item.box,
                item.text,
                item.treatment,
                mode="overlay",
                thresholds=spec.thresholds,
                scene=item.scene,
            )
        reports.append(
            BoxReport(
                box=item.text.field,
                mode=item.box.mode,
                delivered=delivered,
                typeset=item.text.record(),
                treatment=item.treatment,
                gate=final,
                integrated_gate=verdict,
                note=notes.get(index, ""),
            )
        )
    stray = (
        _stray_text(canvas, [integration_box(c.text) for c in composed])
        if spec.stray_text
        else None
    )
    passed = all(r.gate.passed for r in reports) and (stray is None or stray.passed)
    return TypographyReport(passed=passed, boxes=reports, stray_text=stray)


def _stray_text(canvas: np.ndarray, boxes: Sequence[PixelBox]) -> GateCheck:
    """OCR outside the boxes on the canvas scaled down by area averaging, band by band."""
    height, width = canvas.shape[:2]
    factor = max(1, math.ceil(max(height, width) / STRAY_TEXT_MAX_SIDE))
    small = _reduce(canvas, factor)
    scaled = [
        PixelBox(b.x0 // factor, b.y0 // factor, -(-b.x1 // factor), -(-b.y1 // factor))
        for b in boxes
    ]
    return stray_text_check(small, scaled)


def _reduce(canvas: np.ndarray, factor: int, band_pixels: int = 2**22) -> np.ndarray:
    """`canvas` shrunk `factor` times by block means, reading about `band_pixels` at a time."""
    if factor == 1:
        return np.array(canvas, copy=True)
    height, width = canvas.shape[:2]
    out_h, out_w = height // factor, width // factor
    band_rows = max(1, band_pixels // (factor * factor * max(out_w, 1)))
    out = np.empty((out_h, out_w, canvas.shape[2]), np.uint8)
    for y in range(0, out_h, band_rows):
        rows = min(band_rows, out_h - y)
        band = np.asarray(canvas[y * factor : (y + rows) * factor, : out_w * factor], np.float32)
        blocks = band.reshape(rows, factor, out_w, factor, -1).mean(axis=(1, 3))
        out[y : y + rows] = np.round(blocks).astype(np.uint8)
    return out
