"""Exact sizes from fixed provider sizes: the closest offered size, then resize and crop."""

from __future__ import annotations

import numpy as np
import pytest

from core.remote.providers import adapter_for
from core.remote.sizes import closest_option, fit, fit_plan, ratio_options, stretch
from core.remote.wire import SizeOption


def options(provider: str, model: str) -> list[SizeOption]:
    return adapter_for(provider).size_options(model, "txt2img")


@pytest.mark.parametrize(
    ("provider", "model", "size", "label", "params"),
    [
        ("imagen", "imagen-4.0-generate-001", (1000, 600), "16:9", ()),
        ("imagen", "imagen-4.0-generate-001", (2400, 1300), "16:9", (("sampleImageSize", "2K"),)),
        ("imagen", "imagen-4.0-fast-generate-001", (2400, 1300), "16:9", ()),  # no 2K tier
        ("imagen", "imagen-4.0-generate-001", (600, 800), "3:4", ()),
        ("openai", "dall-e-3", (1000, 1000), "1024x1024", ()),
        ("openai", "dall-e-3", (1200, 500), "1792x1024", ()),
        ("openai", "gpt-image-1", (640, 480), "1536x1024", ()),
        ("openai", "dall-e-2", (300, 300), "512x512", ()),  # smallest square that covers
        ("openai", "dall-e-2", (2000, 2000), "1024x1024", ()),  # none covers: the largest
        ("ideogram", "V_2", (1000, 300), "ASPECT_3_1", ()),
        ("ideogram", "V_3", (800, 1000), "4x5", ()),
        ("gemini", "gemini-2.5-flash-image", (2100, 900), "21:9", ()),
        ("gemini", "gemini-3-pro-image-preview", (2600, 1500), "16:9", (("imageSize", "2K"),)),
    ],
)
def test_the_closest_offered_size_is_asked_for(provider, model, size, label, params):
    chosen = closest_option(options(provider, model), *size)
    assert (chosen.label, chosen.params) == (label, params)


def test_aspect_comes_before_area():
    square, wide = SizeOption("sq", 4096, 4096), SizeOption("wide", 300, 200)
    assert closest_option([square, wide], 1500, 1000) is wide


def test_ratio_options_are_near_the_area_on_the_grid():
    (wide,) = ratio_options(["16:9"], 1024 * 1024)
    assert wide.width % 64 == 0 and wide.height % 64 == 0
    assert abs(wide.width * wide.height / 1024**2 - 1) < 0.05
    assert abs(wide.width / wide.height - 16 / 9) < 0.05


def test_a_wider_answer_is_resized_to_the_height_and_cropped_in_the_middle():
    plan = fit_plan((1000, 600), (1408, 768), "16:9")
    assert plan.resized == (1100, 600) and plan.crop == (50, 0, 1050, 600)
    assert plan.action == "resize+crop"
    assert plan.record() == {
        "asked": [1000, 600],
        "requested": "16:9",
        "returned": [1408, 768],
        "resized": [1100, 600],
        "crop": [50, 0, 1050, 600],
        "action": "resize+crop",
    }


def test_a_taller_answer_is_cropped_top_and_bottom():
    plan = fit_plan((1000, 500), (1024, 1024), "1024x1024")
    assert plan.resized == (1000, 1000) and plan.crop == (0, 250, 1000, 750)


def test_same_aspect_is_only_resized_and_the_exact_size_is_left_alone():
    assert fit_plan((512, 512), (1024, 1024), "1:1").action == "resize"
    assert fit_plan((1024, 1024), (1024, 1024), "1:1").action == "none"
    assert fit_plan((640, 480), (1024, 1024), "1:1", keep_aspect=False).action == "stretch"


@pytest.mark.parametrize(
    ("asked", "returned"),
    [((1000, 600), (1408, 768)), ((333, 777), (768, 1408)), ((64, 64), (1536, 672)),
     ((3000, 1000), (1024, 1024)), ((1001, 999), (1024, 1024))],
)  # fmt: skip
def test_fit_always_gives_exactly_the_asked_size(asked, returned):
    image = np.random.default_rng(0).integers(0, 256, (returned[1], returned[0], 3), np.uint8)
    out = fit(image, fit_plan(asked, returned, "x"))
    assert out.shape == (asked[1], asked[0], 3) and out.dtype == np.uint8


def test_the_crop_keeps_the_middle_of_the_answer():
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = 255  # the middle third is white
    out = fit(image, fit_plan((100, 100), (300, 100), "x"))
    assert out.shape == (100, 100, 3) and out.min() == 255


def test_stretch_maps_masks_with_nearest_values():
    mask = np.zeros((48, 64), np.uint8)
    mask[:, 32:] = 255
    out = stretch(mask, (100, 30), nearest=True)
    assert out.shape == (30, 100) and set(np.unique(out)) == {0, 255}
    assert stretch(mask, (64, 48)) is mask
