"""Copy the OpenAPI v3 schemas of KubeRay's CRDs into the test data.

    python scripts/extract_crd_schemas.py [CRD_DIR] [DEST_DIR]

CRD_DIR holds KubeRay 1.7.0's `ray.io_<plural>.yaml` CustomResourceDefinitions
(default ../shared/crds); DEST_DIR (default tests/k8s/data/crds) receives
`<plural>.json`, the `v1` version's openAPIV3Schema, so that the tests need
nothing outside the repository.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PLURALS = ("rayservices", "rayjobs")


def crd_schema(crd_file: Path, version: str = "v1") -> dict[str, Any]:
    """The openAPIV3Schema of one version of a CustomResourceDefinition file."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(crd_file.read_text(), Loader=loader)
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return served["schema"]["openAPIV3Schema"]


def main(crd_dir: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for plural in PLURALS:
        schema = crd_schema(crd_dir / f"ray.io_{plural}.yaml")
        path = dest / f"{plural}.json"
        path.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        Path(args[0]) if args else ROOT.parent / "shared" / "crds",
        Path(args[1]) if len(args) > 1 else ROOT / "tests" / "k8s" / "data" / "crds",
    )
