"""Sample scenes from a seed and draw them at any size.

Geometry: a picture is a 3 x 3 grid of ninths; an object is centred in its
ninth, its extent a fixed fraction of the ninth's shorter side (small 0.45,
large 0.85). Squares and circles fill that extent; a triangle points up, as
wide and as tall as the extent. Drawing is exact (no anti-aliasing), so a
render is a pure function of (prompt, width, height).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
from PIL import Image, ImageDraw

from core.scenes.grammar import (
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    describe,
    parse,
)

__all__ = ["EXTENT", "held_out", "object_box", "render", "sample_prompts", "sample_scene"]

EXTENT = {"small": 0.45, "large": 0.85}
"""An object's extent as a fraction of its ninth's shorter side."""
HELD_OUT_PERCENT = 10


def object_box(obj: SceneObject, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the square that holds `obj` in a width x height picture."""
    column, row = POSITIONS[obj.position]
    cell_w, cell_h = width / 3, height / 3
    cx, cy = (column + 0.5) * cell_w, (row + 0.5) * cell_h
    half = EXTENT[obj.size] * min(cell_w, cell_h) / 2
    return cx - half, cy - half, cx + half, cy + half


def render(scene: Scene | str, width: int = 128, height: int = 128) -> np.ndarray:
    """The (height, width, 3) uint8 picture of a scene (or of a prompt of the grammar)."""
    scene = parse(scene) if isinstance(scene, str) else scene
    image = Image.new("RGB", (width, height), COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        left, top, right, bottom = object_box(obj, width, height)
        box = (round(left), round(top), round(right) - 1, round(bottom) - 1)
        fill = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif obj.shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            apex = ((box[0] + box[2]) / 2, box[1])
            draw.polygon([apex, (box[2], box[3]), (box[0], box[3])], fill=fill)
    return np.asarray(image)


def held_out(scene: Scene | str) -> bool:
    """Whether a scene (or prompt) is in the evaluation split, which training never sees: a
    fixed tenth, by the hash of its picture's description (objects in position order, so
    two wordings of one picture fall on the same side)."""
    scene = parse(scene) if isinstance(scene, str) else scene
    order = list(POSITIONS)
    objects = tuple(sorted(scene.objects, key=lambda o: order.index(o.position)))
    canonical = describe(Scene(scene.background, objects))
    digest = hashlib.sha256(canonical.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELD_OUT_PERCENT


def sample_scene(rng: random.Random) -> Scene:
    """One or two objects, each a colour other than the background's, in distinct ninths."""
    background = rng.choice(list(COLOURS))
    count = rng.choice((1, 2))
    positions = rng.sample(list(POSITIONS), count)
    objects = tuple(
        SceneObject(
            colour=rng.choice([c for c in COLOURS if c != background]),
            shape=rng.choice(SHAPES),
            position=position,
            size=rng.choice(SIZES),
        )
        for position in positions
    )
    return Scene(background, objects)


def _wording(scene: Scene, rng: random.Random) -> str:
    """The prompt of a scene, a default size or position sometimes left unsaid."""
    parts = []
    for obj in scene.objects:
        size = "" if obj.size == "large" and rng.random() < 0.3 else f"{obj.size} "
        where = "" if obj.position == "centre" and rng.random() < 0.5 else f" at the {obj.position}"
        parts.append(f"a {size}{obj.colour} {obj.shape}{where}")
    return f"{' and '.join(parts)} on a {scene.background} background"


def sample_prompts(
    seed: int, count: int, split: str = "train", full: bool = False
) -> list[tuple[str, Scene]]:
    """`count` (prompt, scene) pairs from `seed`, all of one split ("train" or "eval").

    `full` states every size and position; otherwise defaults are sometimes left unsaid.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    rng = random.Random(seed)
    pairs: list[tuple[str, Scene]] = []
    while len(pairs) < count:
        scene = sample_scene(rng)
        if held_out(scene) != (split == "eval"):
            continue
        pairs.append((describe(scene) if full else _wording(scene, rng), scene))
    return pairs
