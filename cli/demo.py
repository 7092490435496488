"""`rendercluster demo`: the main job on an embedded cluster, with outputs a person can judge.

1. A real photo (scikit-image's public-domain astronaut) upscaled x4 by the
   Real-ESRGAN replicas through the tiled router, plus a comparison sheet:
   Lanczos vs the model, and naive tiles vs padded, blended tiles.
2. A billboard-format hires render (base, Real-ESRGAN upscale tiled across the
   upscaler replicas, tiled refine, blend) of a scene prompt on the scenes model
   (trained here, models/scenes), with a headline typeset by code after the last
   model pass and gated. The scenes checker reads the billboard back against its
   prompt, clause by clause, beside the seam score and the headline's gate.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console

from cli.client import RenderClient
from cli.jobs import describe, download, follow_job
from core.imaging import encode_base64, encode_image
from core.largeformat.seams import seam_score
from core.largeformat.upscaling import plan_upscale
from core.scenes import SceneCheck, check

HEADLINE = {
    "copy": "Harbour Days: 12-14 June",
    "font_hint": "serif-strong",
    "anchor": {"x": 0.04, "y": 0.08, "w": 0.6, "h": 0.3},
    "max_lines": 1,
}
BILLBOARD_MODEL = "scenes"
BILLBOARD_PROMPT = (
    "a large yellow circle at the bottom left and a small red square at the right "
    "on a blue background"
)  # the headline sits in the top left, clear of both objects
CROP = (200, 60, 96, 96)  # x, y, w, h of the source region shown in the sheet (the face)
LABEL_HEIGHT = 28


def run_demo(url: str, out_dir: Path, width: int, height: int, console: Console) -> dict[str, Any]:
    """Run both demo jobs against the cluster at `url`, writing into `out_dir`; what each
    produced (the job's view and the file)."""
    from skimage import data  # the photo ships inside scikit-image

    out_dir.mkdir(parents=True, exist_ok=True)
    client = RenderClient(url)
    photo = data.astronaut()
    source_path = out_dir / "astronaut.png"
    source_path.write_bytes(encode_image(photo, "png"))

    console.rule("1. Real-ESRGAN x4 of a real photo, tiled across the upscaler replicas")
    started = time.perf_counter()
    body = {"image": encode_base64(source_path.read_bytes()), "scale": 4, "wait": False}
    view = follow_job(client, client.post("/v1/upscale", body), console)
    upscaled_path = download(client, view, out_dir / "astronaut-x4.png")
    produced = {"upscale": {**view, "path": str(upscaled_path)}}
    console.print(describe(view, upscaled_path, time.perf_counter() - started))
    upscaled = np.asarray(Image.open(upscaled_path).convert("RGB"))
    sheet_path = out_dir / "comparison.png"
    naive_seams = _comparison_sheet(photo, upscaled, sheet_path)
    console.print(
        f"wrote [bold]{sheet_path}[/]: Lanczos vs model, naive tiles (seam score "
        f"{naive_seams:.3f}) vs padded blended tiles ({view['result']['seam_score']:.3f})"
    )

    console.rule(f"2. A {width}x{height} hires render of a scene on the scenes model")
    started = time.perf_counter()
    body = {
        "prompt": BILLBOARD_PROMPT,
        "model": BILLBOARD_MODEL,
        "width": width,
        "height": height,
        "seed": 7,
        "mode": "hires",
        "hires_upscaler": "upscaler",  # the base upscaled by Real-ESRGAN, not Lanczos
        "text_boxes": [HEADLINE],
        "wait": False,
    }
    view = follow_job(client, client.post("/v1/renders", body), console)
    billboard = download(client, view, out_dir / "billboard.png")
    scene = check(Image.open(billboard), BILLBOARD_PROMPT)
    reading = [
        {"clause": c.name, "expected": c.expected, "found": c.found, "holds": c.holds}
        for c in scene.clauses
    ]
    produced["billboard"] = {**view, "path": str(billboard), "scene_check": reading}
    console.print(describe(view, billboard, time.perf_counter() - started))
    console.print(_gate_line(view["typography"]))
    console.print(_scene_line(scene))
    console.print(
        "[dim]Judge the billboard against its prompt: the scenes checker's reading above, "
        "the seam score (about 1.0 = seams invisible) and the headline's gate.[/]"
    )
    return {**produced, "comparison": str(sheet_path)}


def _scene_line(scene: SceneCheck) -> str:
    """The scenes checker's reading of the billboard, clause by clause."""
    shown = ", ".join(
        f"{c.name} {c.expected}" + ("" if c.holds else f" [red](found {c.found})[/]")
        for c in scene.clauses
    )
    held = sum(c.holds for c in scene.clauses)
    return f"scene check: {held}/{len(scene.clauses)} clauses hold: {shown}"


def _gate_line(typography: dict) -> str:
    """The headline's gate verdict in one line."""
    box = typography["boxes"][0]
    checks = {check["name"]: check for check in box["gate"]["checks"]}
    verdict = "passed" if typography["passed"] else "FAILED"
    return (
        f"headline typeset at {box['typeset']['cap_height_px']} px cap height, gate {verdict}: "
        f"OCR read {box['gate']['ocr_text']!r}, fidelity {checks['fidelity']['value']}, "
        f"contrast {checks['contrast']['value']}:1 ({box['treatment']['kind']})"
    )


def _comparison_sheet(photo: np.ndarray, upscaled: np.ndarray, path: Path) -> float:
    """Write a 2x2 sheet of one region; return the seam score of the naive tiling."""
    from serve.upscaler import load_upscaler

    scale = upscaled.shape[0] // photo.shape[0]
    x, y, w, h = CROP
    region = photo[y : y + h, x : x + w]
    lanczos = np.asarray(
        Image.fromarray(region).resize((w * scale, h * scale), Image.Resampling.LANCZOS)
    )
    model = upscaled[y * scale : (y + h) * scale, x * scale : (x + w) * scale]
    naive = _naive_tiles(photo, load_upscaler("realesrgan:animevideov3-x4", scale), 128)
    naive_region = naive[y * scale : (y + h) * scale, x * scale : (x + w) * scale]
    plan = plan_upscale(photo.shape[1], photo.shape[0], scale, 128, padding=0, overlap=0).canvas
    panels = [
        ("Lanczos x4", lanczos),
        ("Real-ESRGAN x4 (tiled, padded, blended)", model),
        ("naive tiles (no context, no overlap)", naive_region),
        ("padded + blended tiles", model),
    ]
    _save_sheet(panels, path)
    return seam_score(naive, plan)


def _naive_tiles(photo: np.ndarray, engine, tile: int) -> np.ndarray:
    """Upscale each tile on its own and butt them together: what seams look like."""
    height, width = photo.shape[:2]
    rows = []
    for y in range(0, height, tile):
        row = [
            engine.upscale(np.ascontiguousarray(photo[y : y + tile, x : x + tile]))
            for x in range(0, width, tile)
        ]
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def _save_sheet(panels: list[tuple[str, np.ndarray]], path: Path) -> None:
    side = panels[0][1].shape[0]
    sheet = Image.new("RGB", (2 * side, 2 * (side + LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=16)
    for index, (label, pixels) in enumerate(panels):
        left, top = (index % 2) * side, (index // 2) * (side + LABEL_HEIGHT)
        draw.text((left + 6, top + 5), label, fill="black", font=font)
        sheet.paste(Image.fromarray(pixels), (left, top + LABEL_HEIGHT))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
