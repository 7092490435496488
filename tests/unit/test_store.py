"""ArtifactStore on both backends: local directory and S3 (moto over HTTP on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest
from botocore.config import Config

from core.config import StorageConfig
from core.errors import NotFoundError, RequestError, StorageError
from core.store import ARTIFACTS_ROUTE, ArtifactStore, LocalStore, S3Store, open_store

MIB = 2**20
BIG = np.random.default_rng(0).bytes(9 * MIB)  # above the 8 MiB multipart threshold


class FailingReader(io.RawIOBase):
    """A non-seekable source that raises once `fail_at` bytes have been read."""

    def __init__(self, data: bytes, fail_at: int):
        self._source = io.BytesIO(data)
        self._fail_at = fail_at

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self._fail_at - self._source.tell()
        if left <= 0:
            raise OSError("source went away")
        return self._source.readinto(memoryview(buffer)[:left])


def leftovers(store: ArtifactStore) -> list[str]:
    """Everything a store holds, temp files and unfinished multipart uploads included."""
    if isinstance(store, LocalStore):
        if not store.root.exists():
            return []
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3Store)
    objects = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    return [o["Key"] for o in objects.get("Contents", [])] + [
        f"upload:{u['Key']}" for u in uploads.get("Uploads", [])
    ]


@contextmanager
def artifact_route(store: ArtifactStore) -> Iterator[str]:
    """A stand-in for the ingress route ``GET /v1/artifacts/{key}``; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            key = self.path.removeprefix(ARTIFACTS_ROUTE + "/")
            try:
                body, status = store.get_bytes(key), 200
            except (NotFoundError, RequestError):
                body, status = b"", 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_put_get_exists_overwrite(store: ArtifactStore) -> None:
    assert store.put_bytes("renders/r1/final.png", b"first") == "renders/r1/final.png"
    assert store.get_bytes("renders/r1/final.png") == b"first"
    assert store.exists("renders/r1/final.png")
    assert not store.exists("renders/r1/other.png")
    assert not store.exists("renders/r1")  # a folder is not an object
    store.put_bytes("renders/r1/final.png", b"second")
    assert store.get_bytes("renders/r1/final.png") == b"second"


def test_put_if_absent_writes_only_the_first_time(store: ArtifactStore) -> None:
    assert store.put_if_absent("system/secret", b"first") is True
    assert store.put_if_absent("system/secret", b"second") is False
    assert store.get_bytes("system/secret") == b"first"
    assert store.list_keys("system/") == ["system/secret"]  # no temp file left behind
    with pytest.raises(RequestError, match="key"):
        store.put_if_absent("../x", b"x")


def test_put_if_absent_has_one_winner_among_racing_writers(store: ArtifactStore) -> None:
    writers = 8
    start = threading.Barrier(writers)

    def write(n: int) -> bool:
        start.wait(timeout=30)
        return store.put_if_absent("race/key", f"writer {n}".encode())

    with ThreadPoolExecutor(writers) as pool:
        won = list(pool.map(write, range(writers)))
    assert won.count(True) == 1
    assert store.get_bytes("race/key") == f"writer {won.index(True)}".encode()


def test_large_file_streams_in_and_out(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "big.tif"
    source.write_bytes(BIG)
    store.put_file("big/out.tif", source)
    assert hashlib.sha256(store.get_bytes("big/out.tif")).digest() == hashlib.sha256(BIG).digest()
    with store.open("big/out.tif") as stream:
        assert stream.read(5) == BIG[:5]
    dest = store.download("big/out.tif", tmp_path / "copy" / "out.tif")
    assert dest.read_bytes() == BIG
    store.put_file("big/from-stream.bin", io.BytesIO(b"streamed"))
    assert store.get_bytes("big/from-stream.bin") == b"streamed"
    if isinstance(store, S3Store):  # went up in parts: a multipart ETag ends in -<parts>
        head = store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}/big/out.tif")
        assert head["ETag"].strip('"').endswith("-2")
        assert head["ContentType"] == "image/tiff"


def test_missing_key_is_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    for read in (store.get_bytes, store.open, lambda k: store.download(k, tmp_path / "x")):
        with pytest.raises(NotFoundError) as caught:
            read("nothing/here.png")
        assert caught.value.field == "key"
        assert "'nothing/here.png'" in str(caught.value)
    assert not (tmp_path / "x").exists()


def test_list_keys_and_delete(store: ArtifactStore) -> None:
    for key in ("a/1.png", "a/2.png", "ab/3.png", "b/4.png"):
        store.put_bytes(key, key.encode())
    assert store.list_keys("a/") == ["a/1.png", "a/2.png"]
    assert store.list_keys("a") == ["a/1.png", "a/2.png", "ab/3.png"]
    assert store.list_keys() == ["a/1.png", "a/2.png", "ab/3.png", "b/4.png"]
    assert store.list_keys("zzz/") == []
    store.delete("a/1.png")
    store.delete("a/1.png")  # deleting twice is fine
    assert store.list_keys("a/") == ["a/2.png"]


def test_content_addressed_same_content_same_key_stored_once(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = hashlib.sha256(b"pixels").hexdigest()
    key = store.put_content_addressed(b"pixels", ".png")
    assert key == f"cas/{digest[:2]}/{digest}.png"
    assert store.get_bytes(key) == b"pixels"

    def no_write(key: str, data: bytes) -> str:
        raise AssertionError(f"{key} written twice")

    monkeypatch.setattr(store, "put_bytes", no_write)
    assert store.put_content_addressed(b"pixels", ".png") == key
    monkeypatch.undo()
    assert store.put_content_addressed(b"other", ".png") != key
    assert len(store.list_keys("cas/")) == 2
    with pytest.raises(RequestError, match="suffix"):
        store.put_content_addressed(b"pixels", "png/../x")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "relative"),
        ("a//b.png", "empty segment"),
        ("a/", "empty segment"),
        ("../secret", "'..'"),
        ("a/../../b", "'..'"),
        ("./a", "'.'"),
        ("a/.hidden", "must not start with '.'"),
        ("a b.png", "only letters"),
        ("a\\b.png", "only letters"),
    ],
)
def test_bad_keys_are_rejected(key: str, reason: str, tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for call in (store.put_bytes, store.get_bytes, store.exists, store.delete, store.url):
        args = (key, b"x") if call == store.put_bytes else (key,)
        with pytest.raises(RequestError) as caught:
            call(*args)
        assert caught.value.field == "key"
        assert reason in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_bad_keys_are_rejected_by_s3_too(s3_store: S3Store) -> None:
    for key in ("../x", "/abs", "a//b"):
        with pytest.raises(RequestError, match="key"):
            s3_store.put_bytes(key, b"x")
    assert leftovers(s3_store) == []


def test_failed_stream_leaves_nothing(store: ArtifactStore) -> None:
    with pytest.raises(StorageError) as caught:
        store.put_file("big/new.bin", FailingReader(BIG, fail_at=9 * MIB - 1))
    assert "big/new.bin" in str(caught.value)
    assert "source went away" in str(caught.value)
    assert not store.exists("big/new.bin")
    assert leftovers(store) == []


def test_failed_overwrite_keeps_the_old_object(store: ArtifactStore) -> None:
    store.put_bytes("final.png", b"old")
    with pytest.raises(StorageError):
        store.put_file("final.png", FailingReader(BIG, fail_at=9 * MIB - 1))
    assert store.get_bytes("final.png") == b"old"
    assert len(leftovers(store)) == 1


def test_url_serves_the_bytes_to_a_plain_http_client(store: ArtifactStore) -> None:
    store.put_bytes("share/poster.png", b"\x89PNG poster")
    with artifact_route(store) as base_url:
        url = store.url("share/poster.png", base_url=base_url)
        response = httpx.get(url, trust_env=False)
    assert response.status_code == 200
    assert response.content == b"\x89PNG poster"
    if isinstance(store, LocalStore):
        assert url == f"{base_url}/v1/artifacts/share/poster.png"
    else:
        assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url


def test_local_url_needs_the_api_base_url(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(RequestError) as caught:
        store.url("a.png")
    assert caught.value.field == "base_url"
    assert store.url("a.png", base_url="http://h:8000/") == "http://h:8000/v1/artifacts/a.png"


def test_presigned_url_expiry_is_configurable(s3_store: S3Store) -> None:
    store = S3Store(
        s3_store.bucket, prefix="expiry", endpoint_url=s3_store.endpoint_url, presign_expiry_s=120
    )
    store.put_bytes("a.png", b"a")
    url = store.url("a.png")
    assert "X-Amz-Expires=120" in url
    assert httpx.get(url, trust_env=False).content == b"a"


def test_uri_names_the_backend(store: ArtifactStore) -> None:
    uri = store.uri("renders/r1/final.png")
    if isinstance(store, LocalStore):
        assert uri == (store.root / "renders/r1/final.png").as_uri()
    else:
        assert uri == f"s3://{store.bucket}/{store.prefix}/renders/r1/final.png"


def test_local_listing_hides_writes_in_flight(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("a/done.png", b"x")
    (tmp_path / "a" / ".tmp-1234").write_bytes(b"partial")
    assert store.list_keys() == ["a/done.png"]


def test_open_store_follows_the_config(s3_store: S3Store, tmp_path: Path) -> None:
    local = open_store(StorageConfig(kind="local", path=tmp_path / "renders"))
    assert isinstance(local, LocalStore) and local.root == tmp_path / "renders"
    config = StorageConfig(
        kind="s3", bucket=s3_store.bucket, prefix="cfg/", endpoint_url=s3_store.endpoint_url
    )
    s3 = open_store(config)
    assert isinstance(s3, S3Store) and s3.prefix == "cfg"
    s3.put_bytes("x.txt", b"via config")
    raw = boto3.client("s3", endpoint_url=s3_store.endpoint_url)
    assert raw.get_object(Bucket=s3_store.bucket, Key="cfg/x.txt")["Body"].read() == b"via config"


def test_missing_bucket_is_a_one_line_storage_error(s3_store: S3Store) -> None:
    store = S3Store("no-such-bucket", prefix="p", endpoint_url=s3_store.endpoint_url)
    with pytest.raises(StorageError) as caught:
        store.put_bytes("a.png", b"a")
    message = str(caught.value)
    assert message.startswith("storage s3://no-such-bucket/p/a.png: NoSuchBucket")
    assert "\n" not in message


def test_s3_server_stopped_mid_run(s3_store: S3Store, own_moto, tmp_path: Path) -> None:
    """A dying endpoint gives a clear StorageError and leaves no object, partial or whole."""
    fail_fast = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2)
    client = boto3.client("s3", endpoint_url=own_moto.endpoint, config=fail_fast)
    store = S3Store(s3_store.bucket, s3_store.prefix, endpoint_url=own_moto.endpoint, client=client)
    store.put_bytes("before.png", b"written while up")
    own_moto.stop()

    source = tmp_path / "big.tif"
    source.write_bytes(BIG)
    writes = (lambda: store.put_bytes("after.png", b"x"), lambda: store.put_file("big.tif", source))
    for write in writes:
        with pytest.raises(StorageError) as caught:
            write()
        assert f"cannot reach the S3 endpoint {own_moto.endpoint}" in str(caught.value)
        assert "\n" not in str(caught.value)
    with pytest.raises(StorageError, match="cannot reach"):
        store.get_bytes("before.png")

    # the session server sees the same (in-process) moto state: only the first object exists
    assert s3_store.list_keys() == ["before.png"]
    assert leftovers(s3_store) == [f"{s3_store.prefix}/before.png"]
