"""Artifacts as objects in an S3 (or S3-compatible) bucket."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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

from core.errors import NotFoundError, StorageError
from core.store.base import ArtifactStore, check_key, content_type

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
                ContentType=content_type(key),
            )

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        with self._errors(key):
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._object(key),
                    Body=data,
                    ContentType=content_type(key),
                    IfNoneMatch="*",  # a conditional write: the first to finish wins
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "PreconditionFailed":
                    raise
                return False  # the key exists: a racing writer won
        return True

    def _put_file(self, key: str, source: Path | BinaryIO) -> None:
        extra = {"ContentType": content_type(key)}
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
