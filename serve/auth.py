"""API keys: read from an environment variable or a file named in the config."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from core.config import AuthConfig
from core.errors import AuthError


class ApiKeys:
    """The accepted keys; the file is re-read when it changes (key rotation)."""

    def __init__(self, config: AuthConfig):
        self.config = config
        self._file_keys: frozenset[str] = frozenset()
        self._file_mtime: float | None = None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _keys(self) -> frozenset[str]:
        keys: set[str] = set()
        if self.config.api_keys_env:
            raw = os.environ.get(self.config.api_keys_env, "")
            keys.update(k.strip() for k in raw.split(",") if k.strip())
        if self.config.api_keys_file:
            keys.update(self._read_file(Path(self.config.api_keys_file).expanduser()))
        return frozenset(keys)

    def _read_file(self, path: Path) -> frozenset[str]:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return frozenset()
        if mtime != self._file_mtime:
            lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
            self._file_keys = frozenset(line for line in lines if line)
            self._file_mtime = mtime
        return self._file_keys

    def check(self, authorization: str | None, api_key_header: str | None) -> None:
        """Raise `AuthError` unless a valid key came as `Bearer <key>` or `X-API-Key`."""
        if not self.enabled:
            return
        offered = api_key_header
        if authorization and authorization.lower().startswith("bearer "):
            offered = authorization[7:].strip()
        if not offered:
            raise AuthError("an API key is required (Authorization: Bearer <key>)")
        if not any(hmac.compare_digest(offered, key) for key in self._keys()):
            raise AuthError("the API key is not valid")
