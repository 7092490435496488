"""The store's interface and its key rules, shared by every backend."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

from core.errors import RequestError

_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9]+)*$")
_MAX_KEY_CHARS = 900  # S3 allows 1024 bytes including the bucket prefix
ARTIFACTS_ROUTE = "/v1/artifacts"  # the API route that serves a local store's artifacts
CAS_PREFIX = "cas"


def check_key(key: str, field: str = "key") -> str:
    """Return `key` if it is a valid artifact key, else raise `RequestError` naming `field`."""
    if not key:
        raise RequestError(field, "must not be empty")
    if len(key) > _MAX_KEY_CHARS:
        raise RequestError(field, f"is {len(key)} characters long; at most {_MAX_KEY_CHARS}")
    if key.startswith("/"):
        raise RequestError(field, f"{key!r} must be relative (no leading '/')")
    segments = key.split("/")
    if "" in segments:
        raise RequestError(field, f"{key!r} has an empty segment ('//' or a trailing '/')")
    if "." in segments or ".." in segments:
        raise RequestError(field, f"{key!r} must not contain '.' or '..' segments")
    for segment in segments:
        if len(segment) > 255 or not _SEGMENT.match(segment):
            raise RequestError(
                field,
                f"{key[:300]!r}: segment {segment[:300]!r} may use only letters, digits, '.', "
                "'_' and '-', must not start with '.' and has at most 255 characters",
            )
    return key


def _check_prefix(prefix: str) -> str:
    """A listing prefix is a key, optionally ending in '/', or empty."""
    if prefix:
        check_key(prefix.removesuffix("/"), field="prefix")
    return prefix


def content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class ArtifactStore(ABC):
    """Where artifacts and run records live. Public methods validate keys, then delegate."""

    def put_bytes(self, key: str, data: bytes) -> str:
        """Write `data` under `key` atomically (replacing any object there); return the key."""
        self._put_bytes(check_key(key), data)
        return key

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write `data` under `key` only when no object is there; True when this call wrote it.

        Of writers racing for one key (other threads, processes or hosts) exactly one
        wins, and the object then holds the winner's bytes for every reader.
        """
        return self._put_if_absent(check_key(key), data)

    def put_file(self, key: str, source: Path | BinaryIO) -> str:
        """Stream a file (a path or a binary file object) under `key` atomically; return the key.

        Large files go up in parts on S3; a failure aborts the upload.
        """
        self._put_file(check_key(key), source)
        return key

    def put_content_addressed(self, data: bytes, suffix: str = "") -> str:
        """Store `data` under ``cas/<h[:2]>/<h><suffix>`` (h: its sha256) once; return the key."""
        if not _SUFFIX.match(suffix):
            raise RequestError("suffix", f"{suffix!r} must be empty or like '.png' or '.tar.gz'")
        digest = hashlib.sha256(data).hexdigest()
        key = f"{CAS_PREFIX}/{digest[:2]}/{digest}{suffix}"
        if not self.exists(key):
            self.put_bytes(key, data)
        return key

    def get_bytes(self, key: str) -> bytes:
        """Return the whole object under `key`."""
        return self._get_bytes(check_key(key))

    def open(self, key: str) -> BinaryIO:
        """Open the object under `key` for streamed reading; the caller closes it."""
        return self._open(check_key(key))

    def download(self, key: str, dest: Path) -> Path:
        """Copy the object under `key` to the local file `dest` (written atomically)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._download(check_key(key), dest)
        return dest

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        return self._exists(check_key(key))

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key that starts with `prefix` (plain string match, as on S3), sorted."""
        return sorted(self._list_keys(_check_prefix(prefix)))

    def delete(self, key: str) -> None:
        """Remove the object under `key`; removing a missing key is not an error."""
        self._delete(check_key(key))

    def url(self, key: str, base_url: str | None = None) -> str:
        """A URL anyone holding it can GET the artifact from (presigned on S3).

        `base_url` is the API's own address (e.g. ``http://127.0.0.1:8000``); a local
        store needs it, S3 ignores it. The key is not checked for existence.
        """
        return self._url(check_key(key), base_url)

    @abstractmethod
    def uri(self, key: str) -> str:
        """A stable, backend-qualified name for run records (``file://...``, ``s3://...``)."""

    @abstractmethod
    def _put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _put_if_absent(self, key: str, data: bytes) -> bool: ...

    @abstractmethod
    def _put_file(self, key: str, source: Path | BinaryIO) -> None: ...

    @abstractmethod
    def _get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def _open(self, key: str) -> BinaryIO: ...

    @abstractmethod
    def _download(self, key: str, dest: Path) -> None: ...

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _list_keys(self, prefix: str) -> list[str]: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _url(self, key: str, base_url: str | None) -> str: ...
