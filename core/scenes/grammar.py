"""The prompt grammar of the scenes world, its words, and its parser.

    a [small|large] COLOUR SHAPE [at the POSITION] on a COLOUR background

with up to two objects joined by `and`. A missing size is large, a missing
position the centre. Parsing is strict: an unknown or misplaced word is an
error that names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import RequestError

__all__ = [
    "ARTICLES",
    "COLOURS",
    "DEFAULT_POSITION",
    "DEFAULT_SIZE",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneObject",
    "ScenePromptError",
    "WORDS",
    "describe",
    "parse",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
# Each position is a ninth of the picture: (column, row) in a 3 x 3 grid.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "centre": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}
DEFAULT_SIZE = "large"
DEFAULT_POSITION = "centre"
MAX_OBJECTS = 2
ARTICLES = ("a", "an")
_GLUE = ("at", "the", "on", "background", "and")
WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [*ARTICLES, *SIZES, *COLOURS, *SHAPES, *(w for p in POSITIONS for w in p.split()), *_GLUE]
    )
)
"""Every word the grammar uses (the scenes tokenizer's vocabulary)."""


class ScenePromptError(RequestError):
    """A prompt that is not a sentence of the scenes grammar; the message names the word."""

    def __init__(self, message: str):
        super().__init__("prompt", message)


@dataclass(frozen=True)
class SceneObject:
    """One shape of a scene."""

    colour: str
    shape: str
    position: str = DEFAULT_POSITION
    size: str = DEFAULT_SIZE


@dataclass(frozen=True)
class Scene:
    """A background colour and one or two objects (drawn in order)."""

    background: str
    objects: tuple[SceneObject, ...]


def describe(scene: Scene) -> str:
    """The full prompt of `scene` (every size and position stated)."""
    parts = [f"a {o.size} {o.colour} {o.shape} at the {o.position}" for o in scene.objects]
    return f"{' and '.join(parts)} on a {scene.background} background"


class _Words:
    """A cursor over a prompt's words that names the word it did not expect."""

    def __init__(self, prompt: str):
        self.words = prompt.lower().replace(",", " ").split()
        self.at = 0

    def peek(self) -> str | None:
        return self.words[self.at] if self.at < len(self.words) else None

    def take(self, allowed: tuple[str, ...] | dict, what: str) -> str:
        word = self.peek()
        if word is None:
            raise ScenePromptError(f"the prompt ends where {what} should be")
        if word not in allowed:
            choices = ", ".join(allowed)
            raise ScenePromptError(f"{word!r} (word {self.at + 1}) is not {what} ({choices})")
        self.at += 1
        return word


def _position(words: _Words) -> str:
    first = words.take(("top", "bottom", "left", "centre", "right"), "a position")
    if first in ("top", "bottom") and words.peek() in ("left", "right"):
        return f"{first} {words.take(('left', 'right'), 'a side')}"
    return first


def _object(words: _Words) -> SceneObject:
    words.take(ARTICLES, "an article")
    size = DEFAULT_SIZE
    if words.peek() in SIZES:
        size = words.take(SIZES, "a size")
    colour = words.take(COLOURS, "a colour")
    shape = words.take(SHAPES, "a shape")
    position = DEFAULT_POSITION
    if words.peek() == "at":
        words.take(("at",), "'at'")
        words.take(("the",), "'the'")
        position = _position(words)
    return SceneObject(colour, shape, position, size)


def parse(prompt: str) -> Scene:
    """The scene a prompt of the grammar describes; `ScenePromptError` names a bad word."""
    words = _Words(prompt)
    objects = [_object(words)]
    while words.peek() == "and":
        words.take(("and",), "'and'")
        if len(objects) == MAX_OBJECTS:
            raise ScenePromptError(f"a scene has at most {MAX_OBJECTS} objects")
        objects.append(_object(words))
    words.take(("on",), "'on' (before the background)")
    words.take(ARTICLES, "an article")
    background = words.take(COLOURS, "a background colour")
    words.take(("background",), "'background'")
    if words.peek() is not None:
        raise ScenePromptError(f"{words.peek()!r} (word {words.at + 1}) follows the end")
    return Scene(background, tuple(objects))
