"""The OCR check of the gate: does tesseract read the copy back from the render?

The box's lines are cut out, turned into dark-on-light coverage, scaled to a
32 px cap height and set side by side, so one `--psm 7` run reads the whole
box. The comparison is exact after NFKC and whitespace normalisation.

OCR cannot tell look-alikes apart reliably (DejaVu's l, I and 1 are near
twins): at a 16 px cap height a sub-level difference in the coverage turns
"Ill" into "III". So where the reading differs from the copy only by
look-alikes, and where tesseract also misreads the clean typeset reference and
reads the render about as it reads the reference (equal up to look-alikes,
spaces and one slip in ten characters), the pixel fidelity check decides, and
the check says so. The fidelity check is what catches a swapped look-alike.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import numpy as np
from PIL import Image

from core.typography.ocr import OcrRead, read_line
from core.typography.results import GateCheck
from core.typography.schema import GateThresholds
from core.typography.typeset import TypesetText

__all__ = ["character_error_rate", "normalise_copy", "ocr_check", "ocr_strip"]

OCR_CAP_HEIGHT = 32
"""Cap height in pixels the lines are scaled to for tesseract."""

_LOOK_ALIKES = ["Il1|![]J", "O0o", "S5$", "B8", "Z2", "'`‘’", '"“”', "-‐–—"]
_SKELETON = str.maketrans({c: group[0] for group in _LOOK_ALIKES for c in group})


def normalise_copy(text: str, case_sensitive: bool = True) -> str:
    """NFKC, whitespace collapsed to single spaces; case-folded unless `case_sensitive`."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text if case_sensitive else text.casefold()


def character_error_rate(read: str, expected: str) -> float:
    """Levenshtein distance between the two, over the length of `expected`."""
    return _edit_distance(read, expected) / max(1, len(expected))


def ocr_check(
    lightness: Callable[[tuple[slice, slice]], np.ndarray],
    text: TypesetText,
    fidelity_passed: bool,
    t: GateThresholds,
) -> tuple[GateCheck, OcrRead]:
    """Read the rendered box (`lightness`: 0 ink to 1 background, per region slice)."""
    expected = normalise_copy(text.text, t.ocr_case_sensitive)
    read = read_line(ocr_strip(lightness, text), t.ocr_timeout_s, t.ocr_attempts)
    if read.text is None:
        return GateCheck(name="ocr", passed=False, value=None, detail=str(read.failure)), read
    got = normalise_copy(read.text, t.ocr_case_sensitive)
    if got == expected:
        return GateCheck(name="ocr", passed=True, value=got, threshold=expected), read
    if _skeleton(got) == _skeleton(expected):
        check = GateCheck(
            name="ocr",
            passed=fidelity_passed,
            value=got,
            threshold=expected,
            detail="the reading differs from the copy only by look-alikes (l/I/1, O/0, ...); "
            "fidelity decides",
        )
        return check, read
    reference = read_line(
        ocr_strip(lambda area: 1 - text.alpha[area] / 255, text), t.ocr_timeout_s, t.ocr_attempts
    )
    if reference.text is not None:
        misread = normalise_copy(reference.text, t.ocr_case_sensitive)
        if misread != expected and _reads_alike(got, misread):
            check = GateCheck(
                name="ocr",
                passed=fidelity_passed,
                value=got,
                threshold=expected,
                detail=f"OCR misreads the clean typeset reference about the same way "
                f"({misread!r}); fidelity decides",
            )
            return check, read
    return GateCheck(name="ocr", passed=False, value=got, threshold=expected), read


def _skeleton(text: str) -> str:
    """The text with look-alikes (l/I/1, O/0, ...) merged and spaces dropped."""
    return text.translate(_SKELETON).replace(" ", "")


def _reads_alike(read: str, reference: str) -> bool:
    """Whether two readings agree up to look-alikes, spaces and one slip in ten characters."""
    a, b = _skeleton(read), _skeleton(reference)
    return _edit_distance(a, b) <= max(1, len(b) // 10)


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    previous = list(range(len(a) + 1))
    for i, want in enumerate(b, 1):
        current = [i]
        for j, got in enumerate(a, 1):
            substitute = previous[j - 1] + (want != got)
            current.append(min(previous[j] + 1, current[j - 1] + 1, substitute))
        previous = current
    return previous[-1]


def ocr_strip(
    lightness: Callable[[tuple[slice, slice]], np.ndarray], text: TypesetText
) -> np.ndarray:
    """The lines side by side, dark on light, at a 32 px cap height, baselines aligned (uint8)."""
    scale = OCR_CAP_HEIGHT / text.cap_height_px
    pad = max(2, round(0.3 * text.cap_height_px))
    region = text.region
    pieces = []
    step = max(1, int(1 / (2 * scale)))  # sample big text at twice the target, then filter
    for line in text.lines:
        crop = line.ink.expanded(pad).intersection(region)
        rows, cols = crop.shifted(-region.x0, -region.y0).slices()
        patch = lightness((slice(rows.start, rows.stop, step), slice(cols.start, cols.stop, step)))
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        image = Image.fromarray(np.rint(patch * 255).astype(np.uint8))
        baseline = round((line.origin[1] - crop.y0) * scale)
        pieces.append((image.resize(size, Image.Resampling.LANCZOS), baseline))
    above = max(baseline for _, baseline in pieces)
    below = max(piece.height - baseline for piece, baseline in pieces)
    margin = OCR_CAP_HEIGHT
    width = sum(piece.width for piece, _ in pieces) + margin * (len(pieces) + 1)
    strip = Image.new("L", (width, above + below + 2 * margin), 255)
    x = margin
    for piece, baseline in pieces:
        strip.paste(piece, (x, margin + above - baseline))
        x += piece.width + margin
    return np.asarray(strip)
