"""A job's request as the store keeps it: the body as JSON, its images as artifacts.

Uploaded images (base64 in the request) are written once under
``job-inputs/<id>/<field>`` and the job keeps their keys, so job records stay
small and listing jobs never reads megabytes of base64.
"""

from __future__ import annotations

import base64
from typing import Any

from core.store import ArtifactStore

__all__ = ["restore", "stash"]


def stash(store: ArtifactStore, job_id: str, body: dict[str, Any], fields: tuple[str, ...]) -> dict:
    """The job request of `body`: each base64 field in `fields` moved to the store."""
    kept = dict(body)
    inputs = {}
    for name in fields:
        value = kept.pop(name, None)
        if value is None:
            continue
        key = f"job-inputs/{job_id}/{name}"
        text = str(value)
        if text.startswith("data:"):
            text = text.partition(",")[2]
        store.put_bytes(key, base64.b64decode(text))
        inputs[name] = key
    return {"body": kept, "inputs": inputs}


def restore(store: ArtifactStore, request: dict[str, Any]) -> dict[str, Any]:
    """The request body again, its images back as base64."""
    body = dict(request["body"])
    for name, key in request.get("inputs", {}).items():
        body[name] = base64.b64encode(store.get_bytes(key)).decode()
    return body
