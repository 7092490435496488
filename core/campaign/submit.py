"""Parse and plan a submitted manifest into plain data (run in a worker process).

A large manifest takes seconds of pure-Python parsing and planning; the ingress
runs this in a separate process (`serve.offload`) so its event loop (and the GIL it
shares with threads) stays free, and gets back only plain data: the campaign's
name, the manifest as JSON text and the keys of its jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.campaign.loader import manifest_from_data, parse_manifest
from core.campaign.plan import plan_campaign
from core.config import ClusterConfig


@dataclass(frozen=True)
class PlannedCampaign:
    name: str
    manifest_json: str  # the validated manifest (by alias), as JSON text
    job_keys: list[str]


def plan_submission(
    manifest: str | dict[str, Any], fmt: str, config: ClusterConfig, source: str = "manifest"
) -> PlannedCampaign:
    """Validate and expand a manifest (text in `fmt`, or parsed data); `ManifestError`."""
    if isinstance(manifest, dict):
        parsed = manifest_from_data(manifest, source=source)
    else:
        parsed = parse_manifest(manifest, fmt, source=source)  # type: ignore[arg-type]
    jobs = plan_campaign(parsed, config)
    return PlannedCampaign(
        parsed.campaign, parsed.model_dump_json(by_alias=True), [job.key for job in jobs]
    )
