import numpy as np
import pytest

from core.typography import Treatment, composite_into
from core.typography.colour_science import parse_hex
from core.typography.typeset import typeset
from tests.unit.typography.scenes import box, busy

SIZE = (800, 300)


def _treatment(**fields) -> Treatment:
    return Treatment(kind="as_given", requested_ink="#ff3300", ink="#ff3300", contrast=5, **fields)


def test_overlay_glyph_pixels_are_exactly_the_ink_and_nothing_else_changes():
    scene = busy(SIZE, seed=1)
    text = typeset(box("Exact $19.99"), SIZE, "b")
    out = scene.copy()
    composite_into(out, text, _treatment())
    region = out[text.region.slices()]
    assert (region[text.alpha == 255] == parse_hex("#ff3300")).all()
    assert (region[text.alpha == 0] == scene[text.region.slices()][text.alpha == 0]).all()
    outside = np.ones(scene.shape[:2], bool)
    outside[text.region.slices()] = False
    assert (out[outside] == scene[outside]).all()


def test_strips_composite_exactly_like_the_whole_canvas():
    scene = busy(SIZE, seed=2)
    text = typeset(box("Streamed rows", cap=48), SIZE, "b")
    treatment = _treatment(stroke_width=3, stroke_colour="#000000")
    whole = scene.copy()
    composite_into(whole, text, treatment)
    strips = scene.copy()
    for top in range(0, SIZE[1], 37):  # strip edges cut through the text
        strip = strips[top : top + 37]
        composite_into(strip, text, treatment, origin=(0, top))
    assert (strips == whole).all()


def test_stroke_and_plate_layers():
    scene = busy(SIZE, seed=4)
    text = typeset(box("Layers", cap=40), SIZE, "b")
    plate = text.ink_box.expanded(10)
    treatment = _treatment(
        stroke_width=4,
        stroke_colour="#000000",
        plate=tuple(plate.as_list()),
        plate_colour="#ffffff",
    )
    out = scene.copy()
    composite_into(out, text, treatment)
    plate_pixels = out[plate.slices()]
    assert set(map(tuple, plate_pixels.reshape(-1, 3))) > {(0, 0, 0), (255, 255, 255)}
    assert (out[text.region.slices()][text.alpha == 255] == parse_hex("#ff3300")).all()
    corner = out[plate.y0, plate.x0]
    assert tuple(corner) == (255, 255, 255)


def test_canvas_must_be_uint8_rgb():
    text = typeset(box("x"), SIZE, "b")
    with pytest.raises(ValueError, match="uint8"):
        composite_into(np.zeros((300, 800, 3), np.float32), text, _treatment())
