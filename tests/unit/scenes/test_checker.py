"""The scenes checker: ground-truth renders pass at every size, wrong prompts fail by clause."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image

from core.scenes import SceneObject, check, describe, parse, render, sample_prompts

SIZES = [(128, 128), (512, 512), (256, 128), (96, 160)]


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_ground_truth_renders_pass_every_clause(width, height):
    count = 40 if width * height > 200_000 else 150
    for prompt, _ in sample_prompts(seed=width + height, count=count):
        result = check(render(prompt, width, height), prompt)
        assert result.passed, (prompt, [c for c in result.clauses if not c.holds])
        assert result.score == 1.0


def test_the_checker_reads_a_pil_image_and_a_scene():
    scene = parse("a small red circle at the top left and a blue square on a white background")
    result = check(Image.fromarray(render(scene, 128, 128)), scene)
    assert result.passed and result.prompt == describe(scene)
    names = [clause.name for clause in result.clauses]
    assert names[0] == "background" and len(names) == 9


def _wrong(obj: SceneObject, **change: str) -> SceneObject:
    return replace(obj, **change)


CHANGES = [
    ("colour", {"colour": "green"}),
    ("position", {"position": "bottom right"}),
    ("shape", {"shape": "triangle"}),
    ("size", {"size": "small"}),
]


@pytest.mark.parametrize(("clause", "change"), CHANGES)
@pytest.mark.parametrize("size", [128, 512])
def test_a_wrong_prompt_fails_exactly_its_clause(clause, change, size):
    truth = parse("a large red circle at the top left on a white background")
    picture = render(truth, size, size)
    claimed = replace(truth, objects=(_wrong(truth.objects[0], **change),))
    result = check(picture, claimed)
    failing = {c.name for c in result.clauses if not c.holds}
    if clause == "colour":  # no green blob: nothing else of the object can be read
        assert failing == {f"object1.{k}" for k in ("colour", "shape", "position", "size")}
    else:
        assert failing == {f"object1.{clause}"}, result.clauses
    assert not result.passed and result.score < 1


def test_each_shape_is_told_from_the_others():
    for truth in ("circle", "square", "triangle"):
        picture = render(f"a large black {truth} on a yellow background", 128, 128)
        for claimed in ("circle", "square", "triangle"):
            result = check(picture, f"a large black {claimed} on a yellow background")
            assert result.clause("object1.shape").found == truth
            assert result.clause("object1.shape").holds == (claimed == truth)


def test_a_wrong_background_fails_only_the_background():
    picture = render("a small purple square at the right on a white background", 128, 128)
    result = check(picture, "a small purple square at the right on a black background")
    assert [c.name for c in result.clauses if not c.holds] == ["background"]
    assert result.clause("background").found == "white"


def test_the_second_object_is_read_apart_from_the_first():
    prompt = "a small red circle at the top and a red square at the bottom on a blue background"
    picture = render(prompt, 128, 128)
    assert check(picture, prompt).passed
    swapped = "a small red square at the top and a red circle at the bottom on a blue background"
    failing = {c.name for c in check(picture, swapped).clauses if not c.holds}
    assert failing == {"object1.shape", "object2.shape"}


def test_noise_that_is_no_colour_fails_every_clause():
    import numpy as np

    grey = np.full((128, 128, 3), 128, np.uint8)
    result = check(grey, "a red circle on a white background")
    assert result.score == 0.0
