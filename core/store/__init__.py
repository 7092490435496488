"""Artifact store: one interface over a local directory and an S3 bucket.

Keys are relative, '/'-separated paths such as ``renders/abc/final.png``: every
segment uses only letters, digits, '.', '_' and '-' and does not start with '.'
(so keys are safe as file paths and URL paths alike). Writes are atomic: a
reader sees the whole object or none, and a failed write leaves nothing under
the key. Backend failures raise `StorageError`; a missing key raises
`NotFoundError`; a malformed key raises `RequestError`.
"""

from __future__ import annotations

from core.config import StorageConfig
from core.store.base import ARTIFACTS_ROUTE, ArtifactStore, check_key
from core.store.local import LocalStore
from core.store.s3 import S3Store

__all__ = [
    "ARTIFACTS_ROUTE",
    "ArtifactStore",
    "LocalStore",
    "S3Store",
    "check_key",
    "open_store",
]


def open_store(config: StorageConfig) -> ArtifactStore:
    """The store a `StorageConfig` describes."""
    if config.kind == "s3":
        assert config.bucket is not None  # enforced by StorageConfig
        return S3Store(
            bucket=config.bucket,
            prefix=config.prefix,
            endpoint_url=config.endpoint_url,
            region=config.region,
            presign_expiry_s=config.presign_expiry_s,
        )
    return LocalStore(config.path)
