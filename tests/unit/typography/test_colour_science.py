import numpy as np
import pytest

from core.typography.colour_science import (
    contrast_ratio,
    delta_e_2000,
    parse_hex,
    relative_luminance,
    srgb_to_lab,
    to_hex,
)


def test_delta_e_2000_matches_sharmas_reference_pairs():
    lab1 = [[50, 2.6772, -79.7751], [50, 0, 0], [50, 2.5, 0], [60.2574, -34.0099, 36.2677]]
    lab2 = [[50, 0, -82.7485], [50, -1, 2], [73, 25, -18], [60.4626, -34.1751, 39.4387]]
    expected = [2.0425, 2.3669, 27.1492, 1.2644]
    assert delta_e_2000(np.array(lab1), np.array(lab2)) == pytest.approx(expected, abs=1e-4)


def test_wcag_contrast_and_lab():
    black, white, grey = relative_luminance(np.array([[0, 0, 0], [255, 255, 255], [128] * 3]))
    assert contrast_ratio(black, white) == pytest.approx(21)
    assert contrast_ratio(grey, black) == pytest.approx(5.32, abs=0.01)
    assert srgb_to_lab(np.array([255, 255, 255], np.uint8)) == pytest.approx([100, 0, 0], abs=1e-3)
    assert to_hex(parse_hex("#a0b1c2")) == "#a0b1c2"
