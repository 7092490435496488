"""A stage run's delivered image: its stored output, tagged with that stage run's record.

A stage's output is stored once and shared: render stages content-addressed
(``cas/``), hires stages under their cache key (``stage-cache/``), and every run
that hits the cache reuses it. So the file is never tagged in place (a re-run
must find the same bytes); each stage run delivers a copy of its own,
``renders/<stage run id>/image.png``, that carries its run id and parameters
(`core.record_metadata`) in PNG text chunks, written without decoding the pixels
(`core.png_text`). The record's `image` (or `review_image`) names the copy and
`stage_image` the stored output, which the next stage consumes. No Ray.
"""

from __future__ import annotations

from core.png_text import store_tagged_png
from core.record_metadata import record_metadata
from core.records import RunRecord
from core.store import ArtifactStore

__all__ = ["STAGE_IMAGE", "delivered_key", "deliver_stage_image", "stage_image_key"]

STAGE_IMAGE = "stage_image"  # the record's output naming the stored (shared) stage output
DELIVERED = ("image", "review_image")


def delivered_key(run_id: str) -> str:
    """Store key of the image stage run `run_id` delivers."""
    return f"renders/{run_id}/image.png"


def deliver_stage_image(store: ArtifactStore, record: RunRecord) -> RunRecord:
    """`record` with its image delivered as a tagged copy; unchanged if it has none."""
    name = next((name for name in DELIVERED if name in record.outputs), None)
    if name is None:
        return record
    stored = record.outputs[name]
    key = delivered_key(record.id)
    metadata = record_metadata(record, record.params.get("scheduler"))
    store_tagged_png(store, stored, key, metadata)
    return record.model_copy(update={"outputs": {**record.outputs, name: key, STAGE_IMAGE: stored}})


def stage_image_key(record: RunRecord) -> str:
    """The stored output a finished stage's record names (the image, for older records)."""
    return record.outputs.get(STAGE_IMAGE, record.outputs["image"])
