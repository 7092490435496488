"""What `GET /v1/models` shows of a model's running replica: the pipelines it loaded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ray import serve

from core.config import deployment_name
from serve.capacity import Capacity

__all__ = ["DIFFUSION_FAMILIES", "loaded_pipelines"]

DIFFUSION_FAMILIES = ("sd", "sdxl", "sd3", "flux")
INFO_TIMEOUT_S = 5.0

logger = logging.getLogger(__name__)


async def loaded_pipelines(
    app_name: str, model_name: str, deployments: Mapping[str, Any]
) -> dict[str, Any] | None:
    """One running replica's `info()["loaded"]` (`deployments`: Serve's status of the app's
    deployments). None when no replica runs (a model scaled to zero is not woken to
    answer) or none answers within `INFO_TIMEOUT_S`."""
    if not Capacity.runs(deployments, model_name):
        return None
    handle = serve.get_deployment_handle(deployment_name(model_name), app_name)
    try:
        info = await asyncio.wait_for(handle.info.remote(), INFO_TIMEOUT_S)
    except Exception:  # the listing still answers; the replica's own log says why
        logger.warning("model %s did not say what it loaded", model_name, exc_info=True)
        return None
    return info.get("loaded")
