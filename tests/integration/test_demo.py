"""`make demo`'s jobs on the shared cluster at a small size: both outputs are written and
what `rendercluster demo --json` prints is JSON of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from cli.demo import run_demo
from core.typography import tesseract_available


@pytest.mark.skipif(not tesseract_available(), reason="tesseract missing (tesseract-ocr)")
def test_the_demo_writes_its_outputs_and_reports_them(cluster, tmp_path):
    produced = run_demo(cluster.url, tmp_path, 768, 256, Console(file=None, quiet=True))
    printed = json.loads(json.dumps(produced))  # what --json prints
    upscaled = np.asarray(Image.open(printed["upscale"]["path"]))
    assert upscaled.shape == (2048, 2048, 3)  # scikit-image's astronaut, 512 x 4
    billboard = Image.open(printed["billboard"]["path"])
    assert billboard.size == (768, 256)
    assert printed["billboard"]["status"] == "done"
    assert printed["billboard"]["hires_upscaler"] == "upscaler"  # the model, not Lanczos
    assert printed["billboard"]["model"] == "scenes"
    reading = {c["clause"]: c for c in printed["billboard"]["scene_check"]}
    assert set(reading) == {"background"} | {
        f"object{n}.{kind}" for n in (1, 2) for kind in ("colour", "shape", "position", "size")
    }
    assert reading["background"] == {
        "clause": "background", "expected": "blue", "found": "blue", "holds": True
    }  # fmt: skip
    assert Path(printed["comparison"]).exists()
