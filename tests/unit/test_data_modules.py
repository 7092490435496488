"""Data below behaviour: importing a schema module loads no implementation of typography.

Each import runs in a fresh interpreter, so modules other tests loaded cannot hide one.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMPLEMENTATION = (
    "core.typography.delivery",
    "core.typography.gate",
    "core.typography.ocr",
    "core.typography.compose",
    "core.typography.fonts",
    "pytesseract",
)
DATA_MODULES = (
    "core.schemas",
    "core.typography",
    "core.typography.schema",
    "core.typography.results",
    "core.config",
    "core.records",
)


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("module", DATA_MODULES)
def test_a_data_module_loads_no_typography_implementation(module):
    loaded = _modules_after_import(module)
    assert module in loaded
    assert sorted(loaded.intersection(IMPLEMENTATION)) == []


def test_the_package_still_gives_every_name_on_first_use():
    code = (
        "import sys\n"
        "from core.typography import TextBox, gate_box, tesseract_available\n"
        "from core.typography.delivery import TextSpec, TypographyReport\n"
        "from core.typography.schema import TextSpec as Spec\n"
        "assert TextSpec is Spec and callable(gate_box) and callable(tesseract_available)\n"
        "assert 'core.typography.gate' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_an_unknown_name_is_an_attribute_error():
    import core.typography

    with pytest.raises(AttributeError, match="no_such_name"):
        _ = core.typography.no_such_name
