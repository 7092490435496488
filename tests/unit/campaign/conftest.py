"""Campaign fixtures: a small cluster config and a 12-item x 2-size manifest."""

from __future__ import annotations

import pytest

from core.campaign import Manifest, RenderJob, expand_manifest, parse_manifest
from core.config import ClusterConfig
from core.config_file import parse_config

CONFIG = """
models:
  quality: {source: "tiny:0", native_resolution: 256}
  wide: {source: "tiny:1", native_resolution: 512, latent_factor: 16}
styles: {photo: quality, poster: wide}
default_style: photo
limits: {max_width: 1024, max_height: 1024, max_pixels: 1048576, max_steps: 50}
"""

SUBJECTS = [
    "a red bicycle",
    "a blue kite",
    "a green teapot",
    "a yellow taxi",
    "a purple umbrella",
    "an orange lantern",
    "a silver robot",
    "a golden retriever",
    "a white lighthouse",
    "a black cat",
    "a brown violin",
    "a pink flamingo",
]


def twelve_item_yaml(campaign: str = "spring-sale") -> str:
    """12 items, the first with an id and copy text, every item at 1:1 and 16:9."""
    lines = [
        f"campaign: {campaign}",
        "defaults:",
        "  style: photo",
        "  sizes: [1:1, 16:9]",
        "  steps: 4",
        "items:",
        "  - id: hero",
        f"    prompt: {SUBJECTS[0]} on a beach",
        '    copy: "Spring sale: 50% off"',
    ]
    lines += [f"  - prompt: {subject}" for subject in SUBJECTS[1:]]
    return "\n".join(lines) + "\n"


@pytest.fixture
def config() -> ClusterConfig:
    return parse_config(CONFIG)


@pytest.fixture
def manifest() -> Manifest:
    return parse_manifest(twelve_item_yaml(), "yaml")


@pytest.fixture
def jobs(manifest: Manifest, config: ClusterConfig) -> list[RenderJob]:
    return expand_manifest(manifest, config)
