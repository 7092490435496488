"""Artifact store: one interface over a local directory and an S3 bucket.

Keys are relative, '/'-separated paths such as ``renders/abc/final.png``: every
segment uses only letters, digits, '.', '_' and '-' and does not start with '.'
(so keys are safe as file paths and URL paths alike). Writes are atomic: a
reader sees the whole object or none, and a failed write leaves nothing under
the key. Backend failures raise `StorageError`; a missing key raises
`NotFoundError`; a malformed key raises `RequestError`.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import BinaryIO, cast

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)

from core.config import StorageConfig
from core.errors import NotFoundError, RequestError, StorageError

__all__ = [
    "ARTIFACTS_ROUTE",
    "ArtifactStore",
    "LocalStore",
    "S3Store",
    "check_key",
    "open_store",
]

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


def _content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class ArtifactStore(ABC):
    """Where artifacts and run records live. Public methods validate keys, then delegate."""

    def put_bytes(self, key: str, data: bytes) -> str:
        """Write `data` under `key` atomically (replacing any object there); return the key."""
        self._put_bytes(check_key(key), data)
        return key

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


def _atomic_write(dest: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `dest` through a hidden temp file in its directory, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalStore(ArtifactStore):
    """Artifacts as files under `root` (the embedded default)."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()

    def uri(self, key: str) -> str:
        return self._path(check_key(key)).as_uri()

    def _path(self, key: str) -> Path:
        """The file of `key`; a symlink anywhere below the root reads as a missing artifact."""
        path = self.root
        for segment in key.split("/"):
            path = path / segment
            if path.is_symlink():
                raise NotFoundError("key", f"no artifact {key!r}")
        return path

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFoundError("key", f"no artifact {key!r}") from exc
        except OSError as exc:
            raise StorageError(key, f"{type(exc).__name__}: {exc.strerror or exc}") from exc

    @contextmanager
    def _write_errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            reason = f"write failed ({type(exc).__name__}): {exc.strerror or exc}"
            raise StorageError(key, reason) from exc

    def _put_bytes(self, key: str, data: bytes) -> None:
        with self._write_errors(key):
            _atomic_write(self._path(key), lambda out: out.write(data))

    def _put_file(self, key: str, source: Path | BinaryIO) -> None:
        with self._write_errors(key):
            if isinstance(source, str | os.PathLike):
                with open(source, "rb") as src:
                    _atomic_write(self._path(key), lambda out: shutil.copyfileobj(src, out))
            else:
                _atomic_write(self._path(key), lambda out: shutil.copyfileobj(source, out))

    def _get_bytes(self, key: str) -> bytes:
        with self._errors(key):
            return self._path(key).read_bytes()

    def _open(self, key: str) -> BinaryIO:
        with self._errors(key):
            return open(self._path(key), "rb")

    def _download(self, key: str, dest: Path) -> None:
        with self._errors(key), open(self._path(key), "rb") as src:
            _atomic_write(dest, lambda out: shutil.copyfileobj(src, out))

    def _exists(self, key: str) -> bool:
        with suppress(NotFoundError):
            return self._path(key).is_file()
        return False  # a symlink

    def _list_keys(self, prefix: str) -> list[str]:
        start = self.root / prefix.rpartition("/")[0]
        keys = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith(".") or os.path.islink(os.path.join(folder, name)):
                    continue  # temp files of writes in flight; links are never followed
                key = Path(folder, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return keys

    def _delete(self, key: str) -> None:
        with self._errors(key):
            self._path(key).unlink(missing_ok=True)

    def _url(self, key: str, base_url: str | None) -> str:
        if not base_url:
            raise RequestError(
                "base_url", "a local store serves artifacts through the API: pass its base URL"
            )
        return f"{base_url.rstrip('/')}{ARTIFACTS_ROUTE}/{key}"


_SESSION_LOCK = threading.Lock()


@cache
def _boto_session() -> boto3.session.Session:
    """One shared session, so that clients reuse its loaded models and resolved credentials."""
    return boto3.session.Session()


def _s3_client(endpoint_url: str | None, region: str | None) -> BaseClient:
    """An S3 client that fails in seconds when the endpoint is down (3 tries, 5 s connect)."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
    )
    with _SESSION_LOCK:  # creating clients from one session is not thread-safe
        return _boto_session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )


class S3Store(ArtifactStore):
    """Artifacts as objects under `prefix` in an S3 (or S3-compatible) bucket.

    Credentials come from the standard AWS chain (environment, shared files,
    instance or pod role); `endpoint_url` points at MinIO, Ceph or moto.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        presign_expiry_s: int = 3600,
        client: BaseClient | None = None,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix, field="prefix")
        self.endpoint_url = endpoint_url
        self.presign_expiry_s = presign_expiry_s
        self.client = client if client is not None else _s3_client(endpoint_url, region)
        self._transfer = TransferConfig()  # multipart above 8 MiB, in 8 MiB parts

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object(check_key(key))}"

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Turn botocore failures into `NotFoundError` / one-line `StorageError`s."""
        location = f"s3://{self.bucket}/{self._object(key)}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFoundError("key", f"no artifact {key!r}") from exc
            message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", ""
            )
            raise StorageError(location, f"{code or 'error'}: {message}") from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            endpoint = self.endpoint_url or "AWS S3"
            raise StorageError(location, f"cannot reach the S3 endpoint {endpoint}") from exc
        except NoCredentialsError as exc:
            raise StorageError(
                location, "no AWS credentials (env, ~/.aws or an instance/pod role)"
            ) from exc
        except (BotoCoreError, S3UploadFailedError, OSError) as exc:
            raise StorageError(location, f"{type(exc).__name__}: {exc}") from exc

    def _put_bytes(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._object(key),
                Body=data,
                ContentType=_content_type(key),
            )

    def _put_file(self, key: str, source: Path | BinaryIO) -> None:
        extra = {"ContentType": _content_type(key)}
        with self._errors(key):
            if isinstance(source, str | os.PathLike):
                self.client.upload_file(
                    os.fspath(source), self.bucket, self._object(key), extra, Config=self._transfer
                )
            else:
                self.client.upload_fileobj(
                    source, self.bucket, self._object(key), extra, Config=self._transfer
                )

    def _get_bytes(self, key: str) -> bytes:
        with self._errors(key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
            return response["Body"].read()

    def _open(self, key: str) -> BinaryIO:
        with self._errors(key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
            return cast(BinaryIO, response["Body"])

    def _download(self, key: str, dest: Path) -> None:
        # s3transfer writes a temp file beside `dest` and renames it when complete
        with self._errors(key):
            self.client.download_file(
                self.bucket, self._object(key), os.fspath(dest), Config=self._transfer
            )

    def _exists(self, key: str) -> bool:
        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except NotFoundError:
            return False
        return True

    def _list_keys(self, prefix: str) -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        keys = []
        with self._errors(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                keys.extend(item["Key"].removeprefix(root) for item in page.get("Contents", []))
        return keys

    def _delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def _url(self, key: str, base_url: str | None) -> str:
        with self._errors(key):
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object(key)},
                ExpiresIn=self.presign_expiry_s,
            )


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
