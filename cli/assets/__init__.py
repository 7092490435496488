"""What the installed package carries: the starter config, the models it names by a
local path (the scenes model) and the Helm chart.

In a checkout these are links to ``configs/local.yaml``, ``models`` and
``helm/render-cluster``; a wheel holds copies, so `rendercluster init`, `up` and
`k8s render` work outside one.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHART_DIR", "STARTER_CONFIG", "STARTER_MODELS", "default_config"]

_HERE = Path(__file__).resolve().parent
STARTER_CONFIG = _HERE / "local.yaml"
STARTER_MODELS = _HERE / "models"  # beside the starter config, as its sources name them
CHART_DIR = _HERE / "chart"
CHECKOUT_CONFIG = Path("configs/local.yaml")


def default_config() -> Path:
    """The config commands use by default: a checkout's ``configs/local.yaml`` when run in
    one, else the starter config the package carries."""
    return CHECKOUT_CONFIG if CHECKOUT_CONFIG.exists() else STARTER_CONFIG
