import numpy as np

from core.typography import local_contrast, paint, ring_mask, solve_contrast
from core.typography.colour_science import parse_hex
from core.typography.typeset import typeset
from tests.unit.typography.scenes import box, busy, flat, render

SIZE = (640, 240)


def test_mid_grey_switches_a_grey_ink_to_black():
    scene = flat(SIZE, (128, 128, 128))
    text_box = box("Mid grey", ink="#909090")
    text, treatment, out = render(text_box, scene)
    assert treatment.kind == "switched" and treatment.ink == "#000000"
    assert treatment.contrast >= 4.5
    measured = local_contrast(out[text.region.slices()], parse_hex(treatment.ink), ring_mask(text))
    assert measured == treatment.contrast


def test_a_good_ink_is_kept_and_auto_picks_the_better_of_black_and_white():
    kept = render(box("Dark sky", ink="#ffee00"), flat(SIZE, (10, 20, 60)))[1]
    assert (kept.kind, kept.ink) == ("as_given", "#ffee00") and kept.contrast >= 4.5
    auto = render(box("Dark sky"), flat(SIZE, (10, 20, 60)))[1]
    assert (auto.kind, auto.ink, auto.requested_ink) == ("ink", "#ffffff", "auto")


def test_busy_background_escalates_to_a_stroke_or_plate_and_reaches_the_target():
    scene = busy(SIZE, seed=3)
    text, treatment, out = render(box("Busy scene 42"), scene)
    assert treatment.kind in ("stroke", "plate")
    assert treatment.contrast >= 4.5
    black, white = parse_hex("#000000"), parse_hex("#ffffff")
    plain = max(
        local_contrast(scene[text.region.slices()], c, ring_mask(text)) for c in (black, white)
    )
    assert plain < 4.5  # neither plain ink would have done
    assert (
        local_contrast(out[text.region.slices()], parse_hex(treatment.ink), ring_mask(text)) >= 4.5
    )


def test_a_locked_ink_is_never_switched():
    scene = flat(SIZE, (128, 128, 128))
    treatment = render(box("Brand", ink="#7f7f7f", ink_locked=True), scene)[1]
    assert treatment.ink == "#7f7f7f"
    assert treatment.kind in ("stroke", "plate") and treatment.contrast >= 4.5


def test_the_plate_covers_the_ring_with_one_colour():
    scene = busy(SIZE, seed=5, scale=3)
    text_box = box("Plate", cap=24, ink="#808080", ink_locked=True)
    text = typeset(text_box, SIZE, "b")
    treatment = solve_contrast(scene[text.region.slices()], text, text_box, target=4.58)
    assert treatment.kind == "plate" and treatment.plate is not None
    painted = paint(scene[text.region.slices()], text, treatment)
    ring = painted[ring_mask(text)]
    assert (ring == np.array(parse_hex(treatment.plate_colour), np.uint8)).all()
