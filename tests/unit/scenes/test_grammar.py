"""The scenes grammar: parsing, defaults, errors that name the word, seeded sampling."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.errors import RequestError
from core.scenes import (
    SceneObject,
    ScenePromptError,
    describe,
    held_out,
    parse,
    sample_prompts,
)
from core.scenes.grammar import WORDS


def test_parse_fills_the_defaults():
    scene = parse("a red circle on a white background")
    assert scene.background == "white"
    assert scene.objects == (SceneObject("red", "circle", "centre", "large"),)


def test_parse_two_objects_and_every_position():
    scene = parse(
        "a small orange triangle at the bottom left and an large black square at the top "
        "on a purple background"
    )
    assert [o.position for o in scene.objects] == ["bottom left", "top"]
    assert parse(describe(scene)) == scene


@pytest.mark.parametrize(
    ("prompt", "word"),
    [
        ("a red hexagon on a white background", "'hexagon'"),
        ("a pink circle on a white background", "'pink'"),
        ("a red circle at the middle on a white background", "'middle'"),
        ("a red circle on a white sky", "'sky'"),
        ("a red circle on a white background please", "'please'"),
        ("a huge red circle on a white background", "'huge'"),
    ],
)
def test_a_bad_word_is_named(prompt, word):
    with pytest.raises(ScenePromptError) as error:
        parse(prompt)
    assert word in str(error.value) and str(error.value).startswith("prompt: ")
    assert isinstance(error.value, RequestError)


def test_errors_for_a_short_prompt_and_three_objects():
    with pytest.raises(ScenePromptError, match="ends where a background colour"):
        parse("a red circle on a")
    three = "a red circle and a blue square and a green triangle on a white background"
    with pytest.raises(ScenePromptError, match="at most 2 objects"):
        parse(three)


def test_sampling_is_seeded_and_splits_never_meet():
    assert sample_prompts(3, 50) == sample_prompts(3, 50)
    assert sample_prompts(3, 50) != sample_prompts(4, 50)
    train = {describe(scene) for _, scene in sample_prompts(0, 500)}
    evaluation = {describe(scene) for _, scene in sample_prompts(0, 100, split="eval")}
    assert not train & evaluation
    assert all(held_out(p) for p in evaluation) and not any(held_out(p) for p in train)
    for prompt, scene in sample_prompts(0, 100, split="eval"):
        if len(scene.objects) == 2:  # the same picture, its objects named the other way round
            swapped = replace(scene, objects=scene.objects[::-1])
            assert held_out(swapped) and held_out(prompt)


def test_sampled_prompts_parse_to_their_scene():
    for prompt, scene in sample_prompts(7, 200):
        assert parse(prompt) == scene
        assert all(o.colour != scene.background for o in scene.objects)
        assert set(prompt.split()) <= set(WORDS)
