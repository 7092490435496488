import numpy as np
import pytest
from PIL import features

from core.errors import RequestError
from core.typography import FONT_HINTS, SHAPING, TextBox, render_alpha
from core.typography.fonts import DEFAULT_FONT_DIR, load_font
from core.typography.typeset import typeset

LONG = "Everything in the summer collection must go before the end of the month"


def _box(copy: str, **fields) -> TextBox:
    fields.setdefault("anchor", {"x": 0.1, "y": 0.1, "w": 0.8})
    return TextBox(copy=copy, **fields)


def test_long_copy_wraps_to_max_lines_and_fits_the_box():
    text = typeset(_box(LONG, max_lines=3), (1024, 1024), "text_boxes[0]")
    assert 2 <= len(text.lines) <= 3
    assert text.text == LONG
    assert text.block.contains(text.ink_box)
    assert text.ink_box.x0 - text.block.x0 <= 2  # left aligned on the ink
    assert all(line.ink.width <= text.block.width for line in text.lines)


def test_fewer_lines_means_a_smaller_font():
    sizes = [
        typeset(_box(LONG, max_lines=n, min_cap_height_px=8), (1024, 1024), "b").font_size
        for n in (4, 2, 1)
    ]
    assert sizes[0] > sizes[1] > sizes[2]


def test_shrinks_to_the_minimum_cap_height_then_refuses_naming_the_box():
    anchor = {"x": 0.1, "y": 0.1, "w": 0.8}
    fits = typeset(
        _box(LONG, anchor=anchor, max_lines=1, min_cap_height_px=10), (1024, 256), "text_boxes[1]"
    )
    assert len(fits.lines) == 1 and fits.cap_height_px >= 10
    with pytest.raises(RequestError) as refused:
        typeset(
            _box(LONG, anchor=anchor, max_lines=1, min_cap_height_px=24),
            (1024, 256),
            "text_boxes[1]",
        )
    assert refused.value.field == "text_boxes[1].copy"
    assert refused.value.status_code == 422
    assert "text_boxes[1]" in refused.value.message and "max_lines=1" in refused.value.message


def test_a_box_height_bounds_the_size_and_a_word_too_wide_is_refused():
    tall = typeset(_box("SALE", anchor={"x": 0, "y": 0, "w": 1}), (1000, 1000), "b")
    short = typeset(_box("SALE", anchor={"x": 0, "y": 0, "w": 1, "h": 0.05}), (1000, 1000), "b")
    assert short.block.height == 50 and short.ink_box.height <= 50
    assert tall.font_size > short.font_size
    with pytest.raises(RequestError, match="wider than the box"):
        typeset(_box("Supercalifragilistic", anchor={"x": 0, "y": 0, "w": 0.05}), (1000, 1000), "b")


def test_alignment_and_forced_line_breaks():
    canvas = (800, 400)
    anchor = {"x": 0.1, "y": 0.1, "w": 0.8}
    right = typeset(_box("Hi\nthere", anchor=anchor, align="right"), canvas, "b")
    centre = typeset(_box("Hi\nthere", anchor=anchor, align="center"), canvas, "b")
    assert [line.text for line in right.lines] == ["Hi", "there"]
    bearing = 0.1 * right.font_size  # lines align on their advances, as in layout tools
    assert all(0 <= right.block.x1 - line.ink.x1 <= bearing for line in right.lines)
    middle = (centre.block.x0 + centre.block.x1) / 2
    assert all(abs((line.ink.x0 + line.ink.x1) / 2 - middle) <= bearing for line in centre.lines)


@pytest.mark.skipif(not features.check("raqm"), reason="Pillow has no raqm layout")
def test_kerning_and_ligatures_are_applied():
    assert SHAPING == "raqm"
    font = load_font(DEFAULT_FONT_DIR / FONT_HINTS["sans"], 100)
    assert font.getlength("AV") < font.getlength("A") + font.getlength("V") - 3
    # the fi ligature: one glyph with no dot, so the shaped mask differs from f + i
    shaped, unligated = font.getmask("ffi"), font.getmask("ffi", features=["-liga"])
    assert font.getlength("ffi") < font.getlength("ffi", features=["-liga"])
    assert shaped.size != unligated.size or bytes(shaped) != bytes(unligated)
    # and the typeset line is measured with kerning: "AVAVAV" sets tighter than spaced pairs
    text = typeset(_box("AVAVAV", min_cap_height_px=40, max_cap_height_px=40), (800, 200), "b")
    assert text.shaping == "raqm"
    plain = sum(font.getlength(c) for c in "AVAVAV") * text.font_size / 100
    assert text.ink_box.width < plain - 5


def test_font_hints_and_missing_fonts():
    for hint, name in FONT_HINTS.items():
        text = typeset(_box("Hello", font_hint=hint), (400, 200), "b")
        assert text.font_path.name == name
    explicit = typeset(_box("Hello", font="DejaVuSerif.ttf"), (400, 200), "b")
    assert explicit.font_path == DEFAULT_FONT_DIR / "DejaVuSerif.ttf"
    with pytest.raises(RequestError) as missing:
        typeset(_box("Hello", font="Helvetica.ttf"), (400, 200), "text_boxes[2]")
    assert missing.value.field == "text_boxes[2].font"


def test_alpha_covers_the_region_only_at_billboard_size():
    text = typeset(_box("SALE 50%", anchor={"x": 0.6, "y": 0.7, "w": 0.2}), (16384, 4096), "b")
    assert text.alpha.shape == (text.region.height, text.region.width)
    assert text.region.area < 16384 * 4096 / 10
    assert text.alpha.max() == 255 and text.alpha.dtype == np.uint8
    x, y, w, h = text.block_fraction()
    assert (round(x, 3), round(y, 3), round(w, 3)) == (0.6, 0.7, 0.2)
    stroked = render_alpha(text, 6)
    assert (stroked >= text.alpha).all() and (stroked > 0).sum() > (text.alpha > 0).sum()
    assert text.record()["font"] == "DejaVuSans.ttf"
