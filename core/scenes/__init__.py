"""The scenes world: flat-colour shapes on a flat background, a prompt grammar that
names every clause of a picture, a renderer, and a checker that reads a picture back.

Pure (numpy, Pillow, scipy); no Ray, no torch.
"""

from core.scenes.checker import Clause, SceneCheck, check
from core.scenes.grammar import (
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    ScenePromptError,
    describe,
    parse,
)
from core.scenes.world import held_out, render, sample_prompts, sample_scene

__all__ = [
    "COLOURS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Clause",
    "Scene",
    "SceneCheck",
    "SceneObject",
    "ScenePromptError",
    "check",
    "describe",
    "held_out",
    "parse",
    "render",
    "sample_prompts",
    "sample_scene",
]
