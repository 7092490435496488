"""Review board: the live previews of large jobs (written by `core.largeformat.row_preview`).

A preview is shown only to the job's own tenant: the job is looked up as the caller's,
and the preview's note must carry the same owner as the job. Call these off the loop.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from core.errors import NotFoundError
from core.jobs.model import Job
from core.largeformat.row_preview import preview_keys
from core.store import ArtifactStore

__all__ = ["LARGE_KINDS", "preview_image", "preview_note", "recent"]

LARGE_KINDS = ("hires", "upscale")
RECENT_S = 30.0
_SHOWN = ("width", "height", "rows_done", "preview_width", "preview_height", "preview_rows")


def recent(job: Job, within_s: float = RECENT_S) -> bool:
    """Whether a job is running, or ended so lately that its last preview may be new."""
    if not job.terminal:
        return True
    ended = job.finished_at or job.updated_at
    return (datetime.now(UTC) - ended).total_seconds() <= within_s


def preview_note(store: ArtifactStore, job: Job) -> dict[str, Any] | None:
    """What the jobs page shows of a large job's preview (rows done, sizes, a version)."""
    if job.kind not in LARGE_KINDS:
        return None
    try:
        note = json.loads(store.get_bytes(preview_keys(job.id)[1]))
    except (NotFoundError, ValueError):
        return None
    if not isinstance(note, dict) or note.get("owner") != job.owner:
        return None
    shown = {name: int(note.get(name, 0)) for name in _SHOWN}
    shown["version"] = f"{int(note.get('canvas', 1))}-{shown['rows_done']}"
    return shown


def preview_image(store: ArtifactStore, job: Job) -> bytes | None:
    """The PNG of a large job's preview, None if it has none (yet)."""
    if preview_note(store, job) is None:
        return None
    try:
        return store.get_bytes(preview_keys(job.id)[0])
    except NotFoundError:
        return None
