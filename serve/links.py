"""Signed artifact links for every URL the API returns, and who owns an artifact.

The secret comes from the environment variable named by `auth.link_secret_env`; without
one, a random secret is made once and kept in the store (`system/link-secret`, never
served), so every ingress replica signs alike.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time

from core.campaign import layout
from core.config import AuthConfig
from core.errors import NotFoundError, RequestError
from core.links import check_signature, signed_query, signed_url
from core.records import RUN_ID_PATTERN, RunRegistry
from core.store import ArtifactStore

SECRET_KEY = "system/link-secret"
PRIVATE_PREFIXES = ("system/", "usage/")
_RUN_ID = re.compile(RUN_ID_PATTERN.strip("^$"))


def campaign_owner_key(campaign: str) -> str:
    return layout.owner_key(campaign)


class LinkSigner:
    """Signs and checks artifact links; says who owns an artifact."""

    def __init__(self, config: AuthConfig, store: ArtifactStore):
        self.config = config
        self.store = store
        self._secret: bytes | None = None
        self._lock = threading.Lock()

    def secret(self) -> bytes:
        if self._secret is None:
            with self._lock:
                self._secret = self._load_secret()
        return self._secret

    def _load_secret(self) -> bytes:
        if self.config.link_secret_env and os.environ.get(self.config.link_secret_env):
            return os.environ[self.config.link_secret_env].encode()
        try:
            return self.store.get_bytes(SECRET_KEY)
        except NotFoundError:
            self.store.put_if_absent(SECRET_KEY, secrets.token_hex(32).encode())
            return self.store.get_bytes(SECRET_KEY)  # the first replica's secret, for all

    def url(self, key: str, base_url: str = "") -> str:
        """A signed link to `key` that works for `auth.link_ttl_s` seconds."""
        return signed_url(self.secret(), key, self.config.link_ttl_s, base_url.rstrip("/"))

    def query(self, key: str, expires: int | None = None) -> str:
        """The signed query of a link to `key` until `expires` (default: `link_ttl_s` on)."""
        until = int(time.time()) + self.config.link_ttl_s if expires is None else expires
        return signed_query(self.secret(), key, until)

    def problem(self, key: str, expires: str, sig: str) -> str | None:
        """None for a good link to `key`; else why it is refused."""
        if key.startswith(PRIVATE_PREFIXES):
            return "invalid signature"
        return check_signature(self.secret(), key, expires, sig)

    def owner(self, key: str, registry: RunRegistry) -> str | None:
        """The tenant owning `key` (its run's or campaign's), None when unknown or private."""
        if key.startswith(PRIVATE_PREFIXES):
            return None
        segments = key.split("/")
        if segments[0] == "campaigns" and len(segments) > 1:
            try:
                return self.store.get_bytes(campaign_owner_key(segments[1])).decode() or None
            except (NotFoundError, RequestError):
                return None
        for segment in segments:
            match = _RUN_ID.match(segment)
            if match:
                try:
                    return registry.get(match.group(0)).owner
                except (NotFoundError, RequestError):
                    return None
        return None
