"""Every ingress replica signs links with the same secret, even when they start together."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from core.auth_config import AuthConfig
from core.errors import NotFoundError
from core.store import LocalStore
from serve.links import SECRET_KEY, LinkSigner

KEY = "renders/r1/image.png"


class StartedTogether(LocalStore):
    """One replica's store: it found no secret, before any replica had written one."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.looked = False

    def get_bytes(self, key: str) -> bytes:
        if key == SECRET_KEY and not self.looked:
            self.looked = True
            raise NotFoundError("key", f"no artifact {key!r}")
        return super().get_bytes(key)


def test_replicas_racing_to_make_the_secret_all_keep_the_first_one(tmp_path: Path) -> None:
    replicas = [LinkSigner(AuthConfig(), StartedTogether(tmp_path)) for _ in range(3)]
    made = [replica.secret() for replica in replicas]
    assert len(set(made)) == 1 and len(made[0]) == 64
    assert LocalStore(tmp_path).get_bytes(SECRET_KEY) == made[0]
    query = parse_qs(urlsplit(replicas[0].url(KEY)).query)
    expires, sig = query["expires"][0], query["sig"][0]
    assert [replica.problem(KEY, expires, sig) for replica in replicas] == [None, None, None]


def test_a_secret_from_the_environment_is_used_and_never_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RC_TEST_LINK_SECRET", "from-the-environment")
    signer = LinkSigner(AuthConfig(link_secret_env="RC_TEST_LINK_SECRET"), LocalStore(tmp_path))
    assert signer.secret() == b"from-the-environment"
    assert not LocalStore(tmp_path).exists(SECRET_KEY)
