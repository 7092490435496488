"""Read a picture back against a prompt of the scenes grammar, clause by clause.

Every pixel takes the palette colour nearest to it (or none, when no colour is
near). The background is the commonest colour. For each object, the blobs of its
colour (connected regions) are found; the one in the stated ninth is the object
(else the largest), and its clauses are read from it:

- colour: a blob of that colour exists;
- position: the blob's centre lies in the stated ninth;
- shape: how much of its bounding box it fills (square ~1, circle ~0.79,
  triangle ~0.5);
- size: its extent against its ninth's shorter side (small 0.45, large 0.85).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from core.scenes.grammar import COLOURS, POSITIONS, Scene, SceneObject, describe, parse
from core.scenes.world import EXTENT

__all__ = ["Clause", "SceneCheck", "check"]

MAX_COLOUR_DISTANCE = 90.0  # RGB distance beyond which a pixel is no palette colour
MIN_BLOB_FRACTION = 0.08  # of the smallest object's area: smaller blobs are noise
_PALETTE = np.array(list(COLOURS.values()), np.float32)
_NAMES = list(COLOURS)
_SIZE_SPLIT = (EXTENT["small"] + EXTENT["large"]) / 2


@dataclass(frozen=True)
class Clause:
    """One clause of the prompt: what it says, what the picture shows, whether they agree."""

    name: str
    expected: str
    found: str | None
    holds: bool


@dataclass(frozen=True)
class SceneCheck:
    """Every clause of one prompt read against one picture."""

    prompt: str
    clauses: tuple[Clause, ...]

    @property
    def passed(self) -> bool:
        return all(clause.holds for clause in self.clauses)

    @property
    def score(self) -> float:
        """The fraction of clauses that hold."""
        return sum(clause.holds for clause in self.clauses) / len(self.clauses)

    def clause(self, name: str) -> Clause:
        return next(clause for clause in self.clauses if clause.name == name)


def _labels(image: np.ndarray) -> np.ndarray:
    """Per pixel, the index of the nearest palette colour, or -1 when none is near."""
    pixels = image[..., :3].astype(np.float32)
    squared = (
        (pixels**2).sum(axis=-1, keepdims=True) - 2 * pixels @ _PALETTE.T + (_PALETTE**2).sum(-1)
    )
    nearest = squared.argmin(axis=-1)
    nearest[squared.min(axis=-1) > MAX_COLOUR_DISTANCE**2] = -1
    return nearest


def _ninth(x: float, y: float, width: int, height: int) -> str:
    cell = (min(int(3 * x / width), 2), min(int(3 * y / height), 2))
    return next(name for name, at in POSITIONS.items() if at == cell)


@dataclass(frozen=True)
class _Blob:
    area: int
    centre: tuple[float, float]
    box: tuple[int, int]  # width, height


def _blobs(mask: np.ndarray, min_area: float) -> list[_Blob]:
    labelled, count = ndimage.label(mask)
    found = []
    for index, region in enumerate(ndimage.find_objects(labelled), start=1):
        if region is None:
            continue
        area = int((labelled[region] == index).sum())
        if area < min_area:
            continue
        ys, xs = region
        centre = ((xs.start + xs.stop) / 2, (ys.start + ys.stop) / 2)
        found.append(_Blob(area, centre, (xs.stop - xs.start, ys.stop - ys.start)))
    return found


def _shape_of(blob: _Blob) -> str:
    fill = blob.area / (blob.box[0] * blob.box[1])
    return "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"


def _object_clauses(
    index: int, obj: SceneObject, labels: np.ndarray, background: int
) -> list[Clause]:
    height, width = labels.shape
    side = min(width, height) / 3
    colour = _NAMES.index(obj.colour)
    min_area = MIN_BLOB_FRACTION * (EXTENT["small"] * side) ** 2
    blobs = _blobs(labels == colour, min_area) if colour != background else []
    name = f"object{index}"
    if not blobs:
        missing = [("colour", obj.colour), ("shape", obj.shape), ("position", obj.position)]
        return [Clause(f"{name}.{k}", v, None, False) for k, v in [*missing, ("size", obj.size)]]
    at_place = [b for b in blobs if _ninth(*b.centre, width, height) == obj.position]
    blob = max(at_place or blobs, key=lambda b: b.area)
    position = _ninth(*blob.centre, width, height)
    shape = _shape_of(blob)
    size = "large" if max(blob.box) / side > _SIZE_SPLIT else "small"
    return [
        Clause(f"{name}.colour", obj.colour, obj.colour, True),
        Clause(f"{name}.shape", obj.shape, shape, shape == obj.shape),
        Clause(f"{name}.position", obj.position, position, position == obj.position),
        Clause(f"{name}.size", obj.size, size, size == obj.size),
    ]


def check(image: np.ndarray | Image.Image, prompt: str | Scene) -> SceneCheck:
    """Read `image` against `prompt`; `ScenePromptError` if the prompt is not of the grammar."""
    scene = parse(prompt) if isinstance(prompt, str) else prompt
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    labels = _labels(pixels)
    counts = np.bincount(labels[labels >= 0].ravel(), minlength=len(_NAMES))
    background = int(counts.argmax()) if counts.any() else -1
    found = _NAMES[background] if background >= 0 else None
    clauses = [Clause("background", scene.background, found, found == scene.background)]
    for index, obj in enumerate(scene.objects, start=1):
        clauses.extend(_object_clauses(index, obj, labels, background))
    return SceneCheck(prompt if isinstance(prompt, str) else describe(scene), tuple(clauses))
