"""The campaign's review report in the store: an HTML contact sheet and a CSV summary.

Links come from functions passed in, so the same report works with any way of
serving the store: the default is paths relative to the report itself (a local
directory opened in a browser, the API's artifact route, a bucket behind a
web server); pass ``store.url`` for presigned S3 links (they expire).
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from core.campaign import layout
from core.campaign.contact_sheet import render_contact_sheet
from core.campaign.expand import RenderJob
from core.campaign.ledger import JobOutcome, job_outcomes, load_ledger
from core.campaign.thumbs import THUMB_PX, ensure_thumbnail
from core.records import RunRegistry
from core.store import ArtifactStore

__all__ = [
    "ReportKeys",
    "UrlFor",
    "relative_to_report",
    "summary_csv",
    "write_report",
]

UrlFor = Callable[[str], str]
SUMMARY_COLUMNS = [
    "key",
    "item_id",
    "item_index",
    "size",
    "width",
    "height",
    "variant",
    "seed",
    "model",
    "style",
    "pipeline",
    "prompt",
    "copy",
    "status",
    "attempts",
    "run_id",
    "image",
    "error",
    "cost_usd",
]


@dataclass(frozen=True)
class ReportKeys:
    """Where `write_report` put its files."""

    html: str
    csv: str


def relative_to_report(campaign: str) -> UrlFor:
    """Links from the report to any store key, as relative paths."""
    folder = posixpath.dirname(layout.report_key(campaign))
    return lambda key: posixpath.relpath(key, folder)


def summary_csv(outcomes: Iterable[JobOutcome]) -> str:
    """One row per job: where it comes from, what it sent and how it ended."""
    out = io.StringIO()
    writer = csv.DictWriter(out, SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for outcome in outcomes:
        job, done, failed = outcome.job, outcome.done, outcome.failed
        writer.writerow(
            _safe_cells(
                {
                    "key": job.key,
                    "item_id": job.item_id,
                    "item_index": job.item_index,
                    "size": job.size,
                    "width": job.width,
                    "height": job.height,
                    "variant": job.variant,
                    "seed": job.seed,
                    "model": job.model,
                    "style": job.request.get("style") or "",
                    "pipeline": job.pipeline or "",
                    "prompt": job.request["prompt"],
                    "copy": job.copy_text or "",
                    "status": outcome.status,
                    "attempts": failed.attempts if failed else "",
                    "run_id": (entry.run_id if (entry := done or failed) else None) or "",
                    "image": outcome.image_key or "",
                    "error": failed.error if failed else "",
                    "cost_usd": "" if done is None or done.cost_usd is None else done.cost_usd,
                }
            )
        )
    return out.getvalue()


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe_cells(row: dict) -> dict:
    """Text cells a spreadsheet would run as a formula (=, +, -, @) start with a quote."""
    return {
        name: f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value
        for name, value in row.items()
    }


def write_report(
    store: ArtifactStore,
    campaign: str,
    jobs: Iterable[RenderJob],
    *,
    url_for: UrlFor | None = None,
    record_url: UrlFor | None = None,
    registry: RunRegistry | None = None,
    thumb_px: int = THUMB_PX,
    now: datetime | None = None,
) -> ReportKeys:
    """Write ``report.html`` and ``summary.csv`` for the campaign's jobs; make missing thumbnails.

    `url_for(key)` links store keys (images, thumbnails); `record_url(run_id)` links run
    records, by default `url_for` of the record's key in `registry`.
    """
    outcomes = job_outcomes(jobs, load_ledger(store, campaign))
    links = url_for or relative_to_report(campaign)
    records = registry or RunRegistry(store)
    thumbs = {
        o.job.key: ensure_thumbnail(store, campaign, o.job.key, o.image_key, thumb_px)
        for o in outcomes
        if o.image_key is not None
    }
    html = render_contact_sheet(
        campaign,
        outcomes,
        thumbs,
        url_for=links,
        record_url=record_url or (lambda run_id: links(records.key(run_id))),
        thumb_px=thumb_px,
        generated_at=(now or datetime.now(UTC)).astimezone(UTC),
    )
    return ReportKeys(
        html=store.put_bytes(layout.report_key(campaign), html.encode()),
        csv=store.put_bytes(layout.summary_key(campaign), summary_csv(outcomes).encode()),
    )
