"""Campaign batches, the pure part: manifest, expansion into jobs, resume ledger, progress, report.

No Ray here: the campaign runner, the API route and the CLI drive these functions.
"""

from core.campaign.expand import RenderJob, derive_seed, expand_manifest
from core.campaign.ledger import (
    Claim,
    DoneEntry,
    FailedEntry,
    JobOutcome,
    Ledger,
    claim_run_id,
    done_keys,
    job_outcomes,
    load_ledger,
    mark_done,
    mark_failed,
    pending_jobs,
    recover_finished,
)
from core.campaign.loader import format_of, load_manifest, manifest_from_data, parse_manifest
from core.campaign.manifest import Manifest, ManifestError, ManifestItem, RenderDefaults
from core.campaign.progress import (
    CampaignProgress,
    ProgressTracker,
    compute_progress,
    load_status,
    save_status,
)
from core.campaign.report import ReportKeys, relative_to_report, summary_csv, write_report
from core.campaign.thumbs import ensure_thumbnail, thumbnail_jpeg

__all__ = [
    "CampaignProgress",
    "Claim",
    "DoneEntry",
    "FailedEntry",
    "JobOutcome",
    "Ledger",
    "Manifest",
    "ManifestError",
    "ManifestItem",
    "ProgressTracker",
    "RenderDefaults",
    "RenderJob",
    "ReportKeys",
    "claim_run_id",
    "compute_progress",
    "derive_seed",
    "done_keys",
    "ensure_thumbnail",
    "expand_manifest",
    "format_of",
    "job_outcomes",
    "load_ledger",
    "load_manifest",
    "load_status",
    "manifest_from_data",
    "mark_done",
    "mark_failed",
    "parse_manifest",
    "pending_jobs",
    "recover_finished",
    "relative_to_report",
    "save_status",
    "summary_csv",
    "thumbnail_jpeg",
    "write_report",
]
