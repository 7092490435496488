import pytest
from pydantic import ValidationError

from core.typography import Anchor, GateThresholds, TextBox

ANCHOR = {"x": 0.1, "y": 0.1, "w": 0.5}


def test_defaults_and_json_use_the_copy_key():
    box = TextBox.model_validate({"copy": "Hello", "anchor": ANCHOR})
    assert box.text == "Hello"
    assert (box.mode, box.align, box.ink, box.max_lines) == ("overlay", "left", "auto", 3)
    dumped = box.model_dump(mode="json")
    assert dumped["copy"] == "Hello" and "text" not in dumped
    assert TextBox.model_validate(dumped) == box


@pytest.mark.parametrize(
    "fields",
    [
        {"colour": "red"},  # extra field
        {"copy": "   "},
        {"copy": "tab\there"},
        {"ink": "red"},
        {"ink": "#12345"},
        {"font": "../etc/passwd"},
        {"font": "fonts/DejaVuSans.ttf"},
        {"font_hint": "comic"},
        {"mode": "soft"},
        {"softness": 1.5},
        {"max_lines": 0},
        {"min_cap_height_px": 4},
        {"ink_locked": True},  # with ink='auto'
        {"min_cap_height_px": 40, "max_cap_height_px": 20},
    ],
)
def test_bad_boxes_are_refused(fields):
    body = {"copy": "Hello", "anchor": ANCHOR, **fields}
    with pytest.raises(ValidationError):
        TextBox.model_validate(body)


@pytest.mark.parametrize(
    "anchor",
    [
        {"x": 0.6, "y": 0.1, "w": 0.5},
        {"x": 0.1, "y": 0.8, "w": 0.5, "h": 0.3},
        {"x": -0.1, "y": 0.1, "w": 0.5},
        {"x": 0.1, "y": 0.1, "w": 0},
        {"x": 0.1, "y": 0.1, "w": 0.5, "z": 1},
    ],
)
def test_anchor_stays_on_the_canvas(anchor):
    with pytest.raises(ValidationError):
        Anchor.model_validate(anchor)


def test_ink_is_normalised_and_every_field_is_described():
    box = TextBox(copy="x", anchor=ANCHOR, ink="#A0B0C0", ink_locked=True)
    assert box.ink == "#a0b0c0"
    for model in (TextBox, Anchor, GateThresholds):
        assert all(f.description for f in model.model_fields.values()), model
