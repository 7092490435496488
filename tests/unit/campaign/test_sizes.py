"""Size specs: canonical forms, clear rejections, ratios resolved on the latent grid."""

from __future__ import annotations

import pytest

from core.campaign.sizes import normalize_size, resolve_size


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1:1", "1:1"),
        (" 16 : 9 ", "16:9"),
        ("1920X1080", "1920x1080"),
        ("16384x4096", "16384x4096"),
    ],
)
def test_specs_are_normalised(text, canonical):
    assert normalize_size(text) == canonical


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("7:0", "is not a size or aspect ratio"),
        ("0x512", "is not a size or aspect ratio"),
        ("wide", "is not a size or aspect ratio"),
        (1024, "is not a size or aspect ratio"),
        ("17:1", "more elongated than 16:1"),
        ("300000x100", "side over 262144"),
    ],
)
def test_bad_specs_are_rejected_with_the_reason(value, reason):
    with pytest.raises(ValueError, match=reason):
        normalize_size(value)


def test_ratios_keep_the_base_area_and_snap_to_the_latent_factor():
    assert resolve_size("1:1", 1024, 8) == (1024, 1024)
    assert resolve_size("16:9", 1024, 8) == (1368, 768)  # 1365.3 x 768
    assert resolve_size("4:5", 1024, 8) == (912, 1144)  # 915.9 x 1144.9
    assert resolve_size("16:9", 256, 64) == (320, 192)
    for spec in ("2:3", "3:2", "21:9", "9:16"):
        width, height = resolve_size(spec, 512, 16)
        assert width % 16 == height % 16 == 0
        assert abs(width * height / 512**2 - 1) < 0.1


def test_exact_sizes_are_kept_as_written():
    assert resolve_size("1000x750", 1024, 8) == (1000, 750)
