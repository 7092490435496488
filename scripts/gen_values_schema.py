"""Write the Helm chart's generated files from the pydantic models.

    python scripts/gen_values_schema.py [CHART_DIR]

- `values.schema.json`: what `helm install` checks the values against;
- `files/model-defaults.json`: every model field's default, filled in by the
  templates when they derive each model's Serve deployment.

Run it after changing `core/config.py` or `core/helm_values.py`; a test fails
while the committed files differ from what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from core.helm_values import model_defaults, values_schema

CHART_DIR = Path(__file__).resolve().parent.parent / "helm" / "render-cluster"


def generated_files() -> dict[str, str]:
    """Chart-relative path -> file text."""
    return {
        "values.schema.json": _dump(values_schema()),
        "files/model-defaults.json": _dump(model_defaults()),
    }


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main(chart_dir: Path) -> None:
    for relative, text in generated_files().items():
        path = chart_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else CHART_DIR)
