"""The metadata a render's image carries, built from what the render knows before encoding.

The image is encoded before its record is complete (timings come after the store
write), so this builds the same record fields `core.render_records` will store and
turns them into `ImageMetadata`.
"""

from __future__ import annotations

from core.image_metadata import ImageMetadata
from core.record_metadata import record_metadata
from core.render_records import RecordLabels, single_record
from core.schemas import RenderRequestBody
from core.validation import ResolvedRender

__all__ = ["render_metadata"]


def render_metadata(
    run_id: str,
    resolved: ResolvedRender,
    body: RenderRequestBody,
    labels: RecordLabels | None = None,
) -> ImageMetadata:
    """The metadata of a one-call render's image: its run id and parameters."""
    record = single_record(run_id, resolved, body, labels or RecordLabels())
    return record_metadata(record, resolved.model.scheduler)
