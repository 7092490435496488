"""Tenants and their API keys: the keys file, key hashes, limits and who is calling.

The keys file (``auth.keys_file``) holds one entry per key: the SHA-256 of the key
(never the key itself), the tenant it belongs to and the tenant's limits. It is
re-read when it changes, so keys are added, rotated and revoked without a restart.
The caller of the request being served is kept in context variables, so that records
and jobs are stamped with their owner and request id wherever they are saved in the
ingress process (they follow `asyncio.to_thread`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from contextvars import ContextVar
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ConfigError

TENANT_PATTERN = r"^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$"
KEY_PREFIX = "rc_"
MAX_KEY_CHARS = 256

current_tenant: ContextVar[str | None] = ContextVar("current_tenant", default=None)
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


class TenantLimits(BaseModel):
    """What one key may do; None: unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int | None = Field(
        None, ge=1, le=10**6, description="Requests per rolling minute (per ingress replica)."
    )
    max_concurrent_jobs: int | None = Field(
        None, ge=1, le=10**5, description="Jobs queued or running at once."
    )
    max_pixels_per_day: int | None = Field(
        None, ge=1, le=10**15, description="Output pixels admitted per UTC day."
    )


class KeyEntry(BaseModel):
    """One API key: its hash, its tenant and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the key.")
    tenant: str = Field(pattern=TENANT_PATTERN, description="Tenant the key acts for.")
    name: str | None = Field(None, max_length=200, description="A label (who holds the key).")
    limits: TenantLimits = Field(default_factory=TenantLimits)


class KeysFile(BaseModel):
    """The keys file: ``keys: [ {sha256, tenant, limits}, ... ]``."""

    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry] = Field(default_factory=list)


def hash_key(key: str) -> str:
    """The SHA-256 (hex) of a key, as the keys file holds it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_keys_file(path: Path) -> KeysFile:
    """Parse a keys file (empty when it does not exist); `ConfigError` naming each problem."""
    if not path.exists():
        return KeysFile()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return KeysFile.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(str(path), problems) from None


def add_key(path: Path, tenant: str, limits: TenantLimits, name: str | None = None) -> str:
    """Create a key for `tenant`, store its hash in `path` (atomically); return the key."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    current = read_keys_file(path)
    entry = KeyEntry(sha256=hash_key(key), tenant=tenant, name=name, limits=limits)
    updated = KeysFile(keys=[*current.keys, entry])
    text = yaml.safe_dump(updated.model_dump(mode="json", exclude_none=True), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key


def visible(owner: str | None, tenant: str | None) -> bool:
    """Whether a caller acting for `tenant` may see a thing owned by `owner`.

    `tenant` None means keys are off (everyone sees everything).
    """
    return tenant is None or owner == tenant
