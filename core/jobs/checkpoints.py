"""Finished pieces of a job kept in the store, so a resumed job redoes only what is missing.

A piece is a uint8 image (a tile, a base render, an upscale pass's tile) stored
losslessly as PNG under ``job-pieces/<id>/<name>.png`` (with, where a piece
came from a hosted call, a JSON note of that call beside it); a resumed job that finds
a piece uses it instead of calling the model, which gives the same bytes as an
undisturbed run because every piece is a pure function of the job and its place.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import numpy as np
from PIL import Image

from core.store import ArtifactStore

__all__ = ["Checkpoints"]

_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class Checkpoints:
    """The pieces of one job in the store."""

    def __init__(self, store: ArtifactStore, job_id: str):
        self.store = store
        self.prefix = f"job-pieces/{job_id}/"

    def _key(self, name: str) -> str:
        return f"{self.prefix}{_NAME.sub('_', name)}.png"

    def load(self, name: str) -> np.ndarray | None:
        """The piece called `name`, if an earlier attempt finished it."""
        key = self._key(name)
        if not self.store.exists(key):
            return None
        with Image.open(io.BytesIO(self.store.get_bytes(key))) as image:
            return np.asarray(image.convert("RGB"))

    def save(self, name: str, pixels: np.ndarray) -> None:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "PNG", compress_level=1)
        self.store.put_bytes(self._key(name), buffer.getvalue())

    def save_note(self, name: str, note: dict[str, Any]) -> None:
        """Keep a small JSON note about the piece `name` (e.g. the hosted call that drew it)."""
        self.store.put_bytes(self._note_key(name), json.dumps(note).encode())

    def load_note(self, name: str) -> dict[str, Any] | None:
        """The note kept about the piece `name`, if any."""
        key = self._note_key(name)
        return json.loads(self.store.get_bytes(key)) if self.store.exists(key) else None

    def _note_key(self, name: str) -> str:
        return f"{self.prefix}{_NAME.sub('_', name)}.json"

    def clear(self) -> None:
        """Drop every piece (the job is over)."""
        for key in self.store.list_keys(self.prefix):
            self.store.delete(key)
