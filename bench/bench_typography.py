"""Typography gate on a held-out headline set: fidelity, false accepts, false rejects, timing.

Headlines (prices, phone numbers, dates, look-alike-heavy words) are generated
from a seed, typeset at cap heights 16, 32 and 64 px on flat, gradient and busy
backgrounds, composited in overlay mode and gated. Each is also rendered with
a one-character corruption of its copy (a look-alike or random substitution,
a deletion, an insertion or a swap) and gated against the true copy. The gate
is given the scene from before the overlay, as the pipeline does.

Targets (issue 8): delivered exact copy 100 %; false accepts on >= 300
corruptions <= 0.5 %; false rejects on correct renders <= 1 %; contrast >= 4.5
and placement IoU >= 0.90 on every box. Prints figures, asserts nothing.
Run: .venv/bin/python bench/bench_typography.py [--per-class N --seed S --billboard]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.typography import (  # noqa: E402
    DEFAULT_THRESHOLDS,
    TextBox,
    composite_into,
    gate_box,
    solve_contrast,
    tesseract_available,
)
from core.typography.colour_science import parse_hex  # noqa: E402
from core.typography.fidelity import matching_pixels, overlay_fidelity  # noqa: E402
from core.typography.typeset import typeset  # noqa: E402

CANVAS = (1024, 512)
CAPS = (16, 32, 64)
BACKGROUNDS = ("flat", "gradient", "busy")
LOOK_ALIKES = {"I": "l1", "l": "I1", "1": "lI", "O": "0", "0": "O", "S": "5", "5": "S", "8": "B"}
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789$%.,/-()+"
WORDS = ("SALE", "Ill", "OO7", "Il1|O0", "NOW", "ONLY", "Lil", "10O", "O0l1", "Oslo", "ends")


def headlines(rng: np.random.Generator, count: int) -> list[str]:
    """Prices, phone numbers, dates and look-alike words, in turn."""
    makers = [
        lambda: f"${rng.integers(1, 999)}.{rng.integers(0, 100):02d}",
        lambda: f"+1 ({rng.integers(200, 999)}) 010-{rng.integers(0, 10000):04d}",
        lambda: f"ends {rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}",
        lambda: " ".join(rng.choice(WORDS, size=2)),
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def corrupt(copy: str, rng: np.random.Generator) -> str:
    """The copy with one character substituted, deleted, inserted or swapped."""
    while True:
        i = int(rng.integers(0, len(copy)))
        kind = rng.choice(["look-alike", "substitute", "delete", "insert", "swap"])
        if kind == "look-alike" and copy[i] in LOOK_ALIKES:
            out = copy[:i] + rng.choice(list(LOOK_ALIKES[copy[i]])) + copy[i + 1 :]
        elif kind == "substitute":
            out = copy[:i] + rng.choice(list(ALPHABET)) + copy[i + 1 :]
        elif kind == "delete" and len(copy) > 1:
            out = copy[:i] + copy[i + 1 :]
        elif kind == "insert":
            out = copy[:i] + rng.choice(list(ALPHABET)) + copy[i:]
        elif kind == "swap" and i + 1 < len(copy):
            out = copy[:i] + copy[i + 1] + copy[i] + copy[i + 2 :]
        else:
            continue
        if out != copy and out.strip() and not out.startswith(" ") and "  " not in out:
            return out


def background(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A flat colour, a two-colour gradient, or busy smooth noise, uint8 (H, W, 3)."""
    width, height = CANVAS
    if kind == "flat":
        return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (height, width, 3)).copy()
    if kind == "gradient":
        a, b = rng.integers(0, 256, (2, 3))
        ramp = np.linspace(0, 1, width)[None, :, None]
        return np.broadcast_to(a + (b - a) * ramp, (height, width, 3)).astype(np.uint8)
    coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize((width + 48, height + 48), Image.Resampling.BICUBIC)
    return np.asarray(smooth)[:height, :width].copy()


def render(box: TextBox, canvas: np.ndarray):
    text = typeset(box, CANVAS, "text_boxes[0]")
    treatment = solve_contrast(canvas[text.region.slices()], text, box)
    out = canvas.copy()
    composite_into(out, text, treatment)
    return text, treatment, out


def _glyphs_only_fidelity(shown: np.ndarray, core: np.ndarray, ink: np.ndarray, cap: int) -> bool:
    """Whether the fidelity check without the scene (glyph pixels vs the ink) would pass."""
    matched = matching_pixels(shown, ink, core, DEFAULT_THRESHOLDS.max_delta_e)
    return overlay_fidelity(core, matched, cap, DEFAULT_THRESHOLDS, "the ink").passed


def headline_set(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    copies = headlines(rng, args.per_class)
    correct = accepted = ocr_only = glyphs_only = exact_delivered = corruptions = 0
    min_contrast, min_placement, gate_s = 21.0, 1.0, []
    rejected: list[str] = []
    for cap in CAPS:
        for kind in BACKGROUNDS:
            for copy in copies:
                scene = background(kind, rng)
                anchor = {"x": 0.05, "y": 0.3, "w": 0.9}
                box = TextBox(
                    copy=copy, anchor=anchor, min_cap_height_px=cap, max_cap_height_px=cap
                )
                text, treatment, out = render(box, scene)
                core = text.alpha == 255
                ink = np.array(parse_hex(treatment.ink), np.uint8)
                exact_delivered += bool(np.all(out[text.region.slices()][core] == ink))
                under = scene[text.region.slices()]
                verdict = gate_box(out, box, text, treatment, scene=under)
                gate_s.append(verdict.seconds)
                checks = {c.name: c for c in verdict.checks}
                min_contrast = min(min_contrast, float(checks["contrast"].value))
                min_placement = min(min_placement, float(checks["placement"].value))
                correct += verdict.passed
                if not verdict.passed:
                    rejected.append(f"{cap}px {kind} {copy!r}: {verdict.failed_checks}")

                wrong = box.model_copy(update={"text": corrupt(copy, rng)})
                wrong_text = typeset(wrong, CANVAS, "text_boxes[0]")
                corrupted = scene.copy()
                composite_into(corrupted, wrong_text, treatment)
                verdict = gate_box(corrupted, box, text, treatment, scene=under)
                shown = corrupted[text.region.slices()]
                glyphs_only += _glyphs_only_fidelity(shown, core, ink, text.cap_height_px)
                corruptions += 1
                accepted += verdict.passed
                ocr_only += next(c for c in verdict.checks if c.name == "ocr").passed
                if verdict.passed:
                    print(f"  false accept: {copy!r} shown as {wrong.text!r} ({cap}px {kind})")
    renders = len(CAPS) * len(BACKGROUNDS) * len(copies)
    print(f"renders {renders} ({len(copies)} copies x caps {CAPS} x {BACKGROUNDS})")
    print(f"delivered exact copy (glyph pixels == ink): {exact_delivered / renders:.2%}")
    print(f"false rejects on correct renders: {renders - correct}/{renders}")
    for line in rejected:
        print(f"  rejected: {line}")
    print(f"false accepts on corruptions: {accepted}/{corruptions} = {accepted / corruptions:.2%}")
    print(f"OCR check alone passes corruptions: {ocr_only}/{corruptions}")
    print(f"glyph pixels alone (no scene given) pass corruptions: {glyphs_only}/{corruptions}")
    print(f"min contrast {min_contrast:.2f}, min placement IoU {min_placement:.3f}")
    print(
        f"gate seconds per box: median {np.median(gate_s):.2f}, p95 "
        f"{np.percentile(gate_s, 95):.2f}, max {max(gate_s):.2f}"
    )


def billboard() -> None:
    """One headline on a 16384 x 4096 canvas: typeset, solve, composite and gate timings."""
    size = (16384, 4096)
    canvas = np.zeros((size[1], size[0], 3), np.uint8)
    canvas[:] = (30, 60, 90)
    box = TextBox(
        copy="Summer sale ends 31/12 — everything must go",
        anchor={"x": 0.05, "y": 0.1, "w": 0.6},
        max_lines=2,
    )
    start = time.perf_counter()
    text = typeset(box, size, "text_boxes[0]")
    typeset_s = time.perf_counter() - start
    scene = canvas[text.region.slices()].copy()
    start = time.perf_counter()
    treatment = solve_contrast(scene, text, box)
    solve_s = time.perf_counter() - start
    start = time.perf_counter()
    composite_into(canvas, text, treatment)
    composite_s = time.perf_counter() - start
    verdict = gate_box(canvas, box, text, treatment, scene=scene)
    print(
        f"billboard {size[0]}x{size[1]}: cap {text.cap_height_px} px, region "
        f"{text.region.width}x{text.region.height}; typeset {typeset_s:.2f} s, solve "
        f"{solve_s:.2f} s, composite {composite_s:.2f} s, gate {verdict.seconds:.2f} s, "
        f"passed {verdict.passed} ({verdict.ocr_text!r})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=36, help="copies per cap x background")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--billboard", action="store_true", help="also time a 16384x4096 box")
    args = parser.parse_args()
    if not tesseract_available():
        sys.exit("tesseract is not installed (Debian: apt-get install tesseract-ocr)")
    headline_set(args)
    if args.billboard:
        billboard()


if __name__ == "__main__":
    main()
