import numpy as np
import pytest

from core.typography import (
    BoxGateResult,
    GateCheck,
    delivery_mode,
    integrated_strength,
    integration_box,
    quiet_negative_prompt,
    quiet_zone_mask,
)
from core.typography.typeset import typeset
from tests.unit.typography.scenes import box


def test_negative_prompt_gains_only_the_missing_terms():
    merged = quiet_negative_prompt("blurry, Text")
    assert merged.startswith("blurry, Text, letters")
    assert merged.lower().split(", ").count("text") == 1
    assert quiet_negative_prompt("").startswith("text, letters")


def test_quiet_zone_mask_is_the_grown_box_at_any_resolution():
    text = typeset(box("Quiet", anchor={"x": 0.25, "y": 0.5, "w": 0.5}), (4096, 2048), "b")
    fractions = text.block_fraction()
    small = quiet_zone_mask([fractions], (512, 256), margin=0.0)
    ys, xs = np.nonzero(small)
    assert (xs.min(), xs.max() + 1) == (128, 384) and ys.min() == 128
    grown = quiet_zone_mask([fractions], (512, 256), margin=0.05)
    assert grown.dtype == np.uint8 and set(np.unique(grown)) == {0, 255}
    assert (grown >= small).all() and (grown > 0).sum() > (small > 0).sum()


def _verdict(passed: bool) -> BoxGateResult:
    check = GateCheck(name="fidelity", passed=passed, value=1.0)
    return BoxGateResult(
        box="text_boxes[0]", mode="integrated", passed=passed, checks=[check],
        expected_text="x", ocr_text="x", character_error_rate=0.0, seconds=0.1,
    )  # fmt: skip


def test_integrated_falls_back_to_overlay_unless_its_gate_passed():
    integrated = box("x", mode="integrated", softness=0.3)
    assert delivery_mode(integrated, _verdict(True)) == "integrated"
    assert delivery_mode(integrated, _verdict(False)) == "overlay"
    assert delivery_mode(integrated, None) == "overlay"
    assert delivery_mode(box("x"), _verdict(True)) == "overlay"


def test_softness_sets_the_strength_and_the_pass_covers_the_ink():
    assert integrated_strength(0) < integrated_strength(0.5) < integrated_strength(1) <= 0.5
    with pytest.raises(ValueError):
        integrated_strength(1.2)
    text = typeset(box("Blend"), (800, 300), "b")
    area = integration_box(text)
    assert area.contains(text.ink_box) and text.region.contains(area)
