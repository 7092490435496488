"""API keys and the tenants they act for.

Keys come from the tenants' keys file (`auth.keys_file`: each entry a key's SHA-256,
its tenant and limits) and, for compatibility, from plain keys in an environment
variable or a file (`api_keys_env`, `api_keys_file`; tenant `auth.default_tenant`,
no limits). Files are re-read when they change, so keys rotate without a restart.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from core.config import AuthConfig
from core.errors import AuthError, ConfigError
from core.tenants import MAX_KEY_CHARS, KeyEntry, TenantLimits, hash_key, read_keys_file

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant, which key (its hash) and the key's limits."""

    tenant: str
    key_hash: str
    limits: TenantLimits


class _Watched:
    """A file parsed again only when its mtime or size changes."""

    def __init__(self, path: Path, parse):
        self.path = path
        self.parse = parse
        self.stamp: tuple[float, int] | None = None
        self.value: dict[str, KeyEntry] = {}

    def get(self) -> dict[str, KeyEntry]:
        try:
            stat = self.path.stat()
        except OSError:
            return {}
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self.stamp:
            try:
                self.value = self.parse(self.path)
            except (ConfigError, OSError, UnicodeDecodeError) as exc:
                # a half-edited file keeps the keys read before (logged), never opens the API
                logger.error("keys file %s not reloaded: %s", self.path, exc)
            self.stamp = stamp
        return self.value


class ApiKeys:
    """The accepted keys, by hash; the files are re-read when they change (key rotation)."""

    def __init__(self, config: AuthConfig):
        self.config = config
        self._plain = (
            _Watched(Path(config.api_keys_file).expanduser(), self._plain_file)
            if config.api_keys_file
            else None
        )
        self._hashed = (
            _Watched(Path(config.keys_file).expanduser(), self._keys_file)
            if config.keys_file
            else None
        )

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _entry(self, key: str) -> KeyEntry:
        return KeyEntry(sha256=hash_key(key), tenant=self.config.default_tenant)

    def _plain_file(self, path: Path) -> dict[str, KeyEntry]:
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        return {entry.sha256: entry for entry in (self._entry(line) for line in lines if line)}

    @staticmethod
    def _keys_file(path: Path) -> dict[str, KeyEntry]:
        return {entry.sha256: entry for entry in read_keys_file(path).keys}

    def entries(self) -> dict[str, KeyEntry]:
        """Every accepted key's entry, by the key's hash."""
        found: dict[str, KeyEntry] = {}
        if self.config.api_keys_env:
            raw = os.environ.get(self.config.api_keys_env, "")
            for key in (k.strip() for k in raw.split(",")):
                if key:
                    found[hash_key(key)] = self._entry(key)
        if self._plain is not None:
            found.update(self._plain.get())
        if self._hashed is not None:
            found.update(self._hashed.get())
        return found

    def check(self, authorization: str | None, api_key_header: str | None) -> Caller | None:
        """The caller of a valid key (`Bearer <key>` or `X-API-Key`); None when keys are off.

        `AuthError` when the key is missing or not valid.
        """
        if not self.enabled:
            return None
        offered = api_key_header
        if authorization and authorization[:7].lower() == "bearer ":
            offered = authorization[7:].strip()
        if not offered:
            raise AuthError("an API key is required (Authorization: Bearer <key>)")
        if len(offered) > MAX_KEY_CHARS:
            raise AuthError("the API key is not valid")
        digest = hash_key(offered)
        entry = self.entries().get(digest)
        if entry is None:
            raise AuthError("the API key is not valid")
        return Caller(tenant=entry.tenant, key_hash=digest, limits=entry.limits)
