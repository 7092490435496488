"""Prompt adherence scorers: an interface, a registry by name, and the scenes scorer.

A scorer says whether it can judge a prompt and, for an image, how well the image
follows it (0..1). `scenes` reads prompts of the scenes grammar with its checker.
Others, such as a CLIP-like model on a GPU cluster, plug in by name: a package
registers a factory under the `rendercluster.scorers` entry-point group (or
calls `register_scorer`), and a suite selects it with `adherence: {scorer: NAME}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

import numpy as np

from core.errors import RequestError
from core.scenes import check
from core.scenes.grammar import ScenePromptError, parse

__all__ = ["Adherence", "Scorer", "make_scorer", "register_scorer", "scorer_names"]

ENTRY_POINT_GROUP = "rendercluster.scorers"


@dataclass(frozen=True)
class Adherence:
    """How well one image follows its prompt: a score in [0, 1], and per clause if known."""

    score: float
    passed: bool
    clauses: dict[str, bool] = field(default_factory=dict)


class Scorer(Protocol):
    """What every adherence scorer offers."""

    name: str

    def applies(self, prompt: str) -> bool:
        """Whether this scorer can judge `prompt` (others are left unscored)."""
        ...

    def score(self, image: np.ndarray, prompt: str) -> Adherence:
        """Judge an (H, W, 3) uint8 image against `prompt`."""
        ...


class ScenesScorer:
    """Prompts of the scenes grammar, read clause by clause by `core.scenes.check`."""

    name = "scenes"

    def applies(self, prompt: str) -> bool:
        try:
            parse(prompt)
        except ScenePromptError:
            return False
        return True

    def score(self, image: np.ndarray, prompt: str) -> Adherence:
        result = check(image, prompt)
        clauses = {clause.name: clause.holds for clause in result.clauses}
        return Adherence(result.score, result.passed, clauses)


_FACTORIES: dict[str, Callable[..., Scorer]] = {"scenes": lambda **options: ScenesScorer()}


def register_scorer(name: str, factory: Callable[..., Scorer]) -> None:
    """Make `factory(**options)` the scorer called `name`."""
    _FACTORIES[name] = factory


def _plugins() -> dict[str, Callable[..., Scorer]]:
    return {point.name: point.load() for point in entry_points(group=ENTRY_POINT_GROUP)}


def scorer_names() -> list[str]:
    """Every scorer that can be named: built in, registered, or installed as a plugin."""
    return sorted({*_FACTORIES, *(p.name for p in entry_points(group=ENTRY_POINT_GROUP))})


def make_scorer(name: str, options: dict[str, Any] | None = None) -> Scorer:
    """The scorer called `name`; `RequestError` naming the known ones if there is none."""
    factory = _FACTORIES.get(name) or _plugins().get(name)
    if factory is None:
        known = ", ".join(scorer_names())
        raise RequestError("adherence.scorer", f"no scorer {name!r} (known: {known})")
    return factory(**(options or {}))
