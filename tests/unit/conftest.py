"""Shared unit-test fixtures: an artifact store on each backend, S3 served by moto over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from core.store import ArtifactStore, LocalStore, S3Store

BUCKET = "render-test"
REGION = "us-east-1"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class MotoServer:
    """A moto S3 server in this process, on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.running = True

    def stop(self) -> None:
        """Stop serving and close the listening socket (moto's stop() leaves it open)."""
        if self.running:
            self._server.stop()
            self._server._server.server_close()  # clients now get "connection refused"
            self.running = False


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One moto server for the session, with the test bucket created."""
    server = MotoServer()
    client = boto3.client(
        "s3", endpoint_url=server.endpoint, region_name=REGION, **DUMMY_CREDENTIALS
    )
    client.create_bucket(Bucket=BUCKET)
    yield server.endpoint
    server.stop()


@pytest.fixture
def own_moto() -> Iterator[MotoServer]:
    """A moto server of the test's own, to stop mid-test (moto's state is shared in-process)."""
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials through the standard chain; nothing read from ~/.aws or proxies."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def s3_store(aws_env: None, s3_endpoint: str) -> S3Store:
    """An S3 store under a prefix of its own in the shared bucket."""
    return S3Store(BUCKET, prefix=f"t-{uuid.uuid4().hex[:12]}", endpoint_url=s3_endpoint)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path) -> ArtifactStore:
    """The same tests against both backends."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return request.getfixturevalue("s3_store")
