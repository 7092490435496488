"""Shared renders of the chart: default values, the ci/ dev values, production-like values."""

from __future__ import annotations

from typing import Any

import pytest
from k8s_support import VALUES_FILES, objects, render, values_for


@pytest.fixture(scope="session")
def rendered() -> dict[str, dict[str, str]]:
    return {case: render(values_for(case)) for case in VALUES_FILES}


@pytest.fixture(scope="session")
def rendered_objects(rendered) -> dict[str, list[dict[str, Any]]]:
    return {case: objects(texts) for case, texts in rendered.items()}
