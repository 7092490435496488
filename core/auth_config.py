"""The `auth` section of the cluster config: where keys are read from, how links are signed.

Never a key in the YAML: only where to read keys from (an environment variable, a
file of plain keys, or the tenants' keys file of hashes and limits).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Strict):
    """API keys. Never written in the YAML: only where to read them from."""

    api_keys_env: str | None = Field(
        None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding comma-separated API keys.",
    )
    api_keys_file: Path | None = Field(
        None, description="File holding one API key per line ('#' starts a comment)."
    )
    keys_file: Path | None = Field(
        None,
        description="Tenants' keys file: each entry a key's sha256, its tenant and limits "
        "(`rendercluster keys add`); re-read when it changes.",
    )
    default_tenant: str = Field(
        "default",
        pattern=r"^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$",
        description="Tenant of the keys in api_keys_env / api_keys_file (no limits).",
    )
    link_secret_env: str | None = Field(
        None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the secret that signs artifact links "
        "(default: a random secret kept in the store).",
    )
    link_ttl_s: int = Field(
        3600, ge=10, le=604800, description="Lifetime of signed artifact links."
    )

    @property
    def enabled(self) -> bool:
        return any(
            value is not None for value in (self.api_keys_env, self.api_keys_file, self.keys_file)
        )
