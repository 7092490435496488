"""Images carry their record: run id and parameters, in every format, read back by Pillow."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import pyvips
from PIL import Image

from core.config import ClusterConfig
from core.image_metadata import ImageMetadata
from core.image_tags import XMP_NAMESPACE, vips_with_metadata
from core.imaging import encode_image
from core.record_metadata import a1111_parameters, record_metadata
from core.records import RunRecord
from core.render_metadata import render_metadata
from core.schemas import RenderRequestBody
from core.validation import resolve_render

EXIF_IFD, USER_COMMENT, IMAGE_DESCRIPTION, XMP_TAG = 0x8769, 0x9286, 0x010E, 700
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP_NAMES = ("RunId", "Parameters", "Settings")
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
"""AUTOMATIC1111's own pattern for one `key: value` of the last line (`re_param_code`)."""


def parse_xmp(xmp: bytes) -> dict[str, str | None]:
    """The rendercluster attributes of an XMP packet."""
    description = ET.fromstring(xmp).find(f".//{{{RDF}}}Description")
    assert description is not None
    return {name: description.get(f"{{{XMP_NAMESPACE}}}{name}") for name in XMP_NAMES}


def read_metadata(data: bytes) -> dict[str, str | None]:
    """The run id, `parameters` and settings JSON an encoded image carries, by format."""
    image = Image.open(io.BytesIO(data))
    if image.format == "PNG":
        text = image.text
        return {
            "run_id": text["run_id"],
            "parameters": text["parameters"],
            "settings": text["rendercluster"],
        }
    exif = image.getexif()
    if image.format == "TIFF":
        xmp = parse_xmp(bytes(image.tag_v2[XMP_TAG]))
    else:
        xmp = parse_xmp(image.info["xmp"])
        comment = exif.get_ifd(EXIF_IFD)[USER_COMMENT]
        assert comment.startswith(b"UNICODE\x00")
        assert comment[8:].decode("utf-16-be") == xmp["Parameters"]
    assert xmp["Settings"] == exif[IMAGE_DESCRIPTION]
    return {"run_id": xmp["RunId"], "parameters": xmp["Parameters"], "settings": xmp["Settings"]}


def parse_a1111(text: str) -> tuple[str, str, dict[str, str]]:
    """Prompt, negative prompt and settings, split the way AUTOMATIC1111's PNG Info does."""
    *lines, last = text.split("\n")
    negative = ""
    if lines and lines[-1].startswith("Negative prompt: "):
        negative = lines.pop()[len("Negative prompt: ") :]
    settings = {}
    for key, value in A1111_PARAM.findall(last):
        settings[key] = json.loads(value) if value.startswith('"') else value
    return "\n".join(lines), negative, settings


def record(**changes) -> RunRecord:
    fields = dict(
        id="20260101-000000-000000-abcdef01",
        kind="render",
        status="done",
        model="tiny",
        model_source="tiny:0",
        prompt="a lighthouse at dusk",
        negative_prompt="blurry",
        seed=42,
        params={"mode": "txt2img", "width": 64, "height": 48, "steps": 3, "guidance": 7.5},
    )
    return RunRecord(**(fields | changes))


def test_parameters_are_in_automatic1111s_format():
    prompt, negative, settings = parse_a1111(a1111_parameters(record(), "euler_a"))
    assert (prompt, negative) == ("a lighthouse at dusk", "blurry")
    assert settings["Steps"] == "3" and settings["Sampler"] == "Euler a"
    assert settings["CFG scale"] == "7.5" and settings["Seed"] == "42"
    assert settings["Size"] == "64x48" and settings["Model"] == "tiny"
    assert settings["Run id"] == "20260101-000000-000000-abcdef01"
    assert "Negative prompt" not in a1111_parameters(record(negative_prompt=""))


def test_a_value_with_a_separator_is_quoted():
    text = a1111_parameters(record(model="a, b: c"))
    assert parse_a1111(text)[2]["Model"] == "a, b: c"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff"])
def test_every_encoding_carries_run_id_and_parameters(fmt):
    metadata = record_metadata(record(prompt="café, «quoted»\nsecond line"), "ddim")
    data = encode_image(np.zeros((8, 8, 3), np.uint8), fmt, metadata=metadata)
    found = read_metadata(data)
    assert found["run_id"] == metadata.run_id
    assert found["parameters"] == metadata.parameters
    assert json.loads(found["settings"])["prompt"] == "café, «quoted»\nsecond line"
    assert parse_a1111(found["parameters"])[2]["Sampler"] == "DDIM"


def test_without_metadata_nothing_is_added():
    image = Image.open(io.BytesIO(encode_image(np.zeros((8, 8, 3), np.uint8), "png")))
    assert "parameters" not in image.info


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff"])
def test_large_format_writes_through_libvips_carry_it_too(fmt):
    metadata = ImageMetadata(
        "20260101-000000-000000-abcdef01",
        "a cat\nSteps: 2, Seed: 1",
        '{"run_id": "20260101-000000-000000-abcdef01"}',
    )
    image = pyvips.Image.new_from_array(np.zeros((8, 8, 3), np.uint8)).copy(interpretation="srgb")
    data = vips_with_metadata(image, fmt, metadata).write_to_buffer(f".{fmt}")
    found = read_metadata(data)
    assert found["run_id"] == metadata.run_id
    assert found["parameters"] == metadata.parameters


def test_a_render_s_metadata_matches_the_record_it_will_store():
    config = ClusterConfig.model_validate(
        {"models": {"tiny": {"source": "tiny:0", "native_resolution": 64, "scheduler": "euler"}}}
    )
    body = RenderRequestBody(prompt="a cat", negative_prompt="dog", seed=7, steps=2, format="jpeg")
    resolved = resolve_render(body, config)
    metadata = render_metadata("20260101-000000-000000-abcdef01", resolved, body)
    prompt, negative, settings = parse_a1111(metadata.parameters)
    assert (prompt, negative, settings["Seed"], settings["Steps"]) == ("a cat", "dog", "7", "2")
    assert settings["Sampler"] == "Euler" and settings["Size"] == "64x64"
    assert json.loads(metadata.settings)["params"]["format"] == "jpeg"
