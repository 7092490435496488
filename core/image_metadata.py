"""What a delivered image says about itself: its run id and the parameters that made it.

`core.record_metadata` makes one from a run record; `core.image_tags` writes it into
each file format.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ImageMetadata"]


@dataclass(frozen=True)
class ImageMetadata:
    """The record an image carries: run id, A1111 `parameters` text and settings JSON."""

    run_id: str
    parameters: str
    settings: str  # JSON of the record's model, prompt, seed and params (ASCII)

    def text_fields(self) -> dict[str, str]:
        """Key/value text the formats that hold text (PNG chunks) carry."""
        return {
            "parameters": self.parameters,
            "run_id": self.run_id,
            "rendercluster": self.settings,
        }
