"""Where a campaign's bookkeeping lives in the artifact store.

Everything of campaign ``<name>`` sits under ``campaigns/<name>/``: one small
JSON object per job key in ``claims/``, ``done/`` and ``failed/``, plus
``status.json``, ``report.html``, ``summary.csv`` and ``thumbs/<key>.jpg``.
"""

from __future__ import annotations

PREFIX = "campaigns"


def campaign_prefix(campaign: str) -> str:
    """``campaigns/<name>/``: the prefix of everything a campaign stores."""
    return f"{PREFIX}/{campaign}/"


def claim_key(campaign: str, job_key: str) -> str:
    """The run id reserved for a job (so a retried render overwrites its own record)."""
    return f"{campaign_prefix(campaign)}claims/{job_key}.json"


def done_key(campaign: str, job_key: str) -> str:
    """The ledger entry of a finished job."""
    return f"{campaign_prefix(campaign)}done/{job_key}.json"


def failed_key(campaign: str, job_key: str) -> str:
    """The ledger entry of a job whose last attempt failed."""
    return f"{campaign_prefix(campaign)}failed/{job_key}.json"


def status_key(campaign: str) -> str:
    """The live progress numbers the API and the CLI read."""
    return f"{campaign_prefix(campaign)}status.json"


def report_key(campaign: str) -> str:
    """The HTML contact sheet."""
    return f"{campaign_prefix(campaign)}report.html"


def summary_key(campaign: str) -> str:
    """The CSV summary, one row per job."""
    return f"{campaign_prefix(campaign)}summary.csv"


def thumb_key(campaign: str, job_key: str) -> str:
    """A job's JPEG thumbnail."""
    return f"{campaign_prefix(campaign)}thumbs/{job_key}.jpg"


def owner_key(campaign: str) -> str:
    """``campaigns/<name>/owner.json``: the tenant that submitted the campaign first."""
    return f"{campaign_prefix(campaign)}owner.json"
