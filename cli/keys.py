"""`rendercluster keys add`: make a tenant's API key; only its hash is stored."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.errors import fail
from cli.exit_codes import ExitCode
from cli.options import JsonOption, emit
from core.errors import ConfigError
from core.tenants import TENANT_PATTERN, TenantLimits, add_key, read_keys_file

__all__ = ["keys_app"]

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)
keys_app = typer.Typer(help="Tenants' API keys (auth.keys_file).", no_args_is_help=True)
KeysFile = Annotated[
    Path, typer.Option("--keys-file", help="The keys file named by auth.keys_file.")
]


@keys_app.command("add")
def add(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key acts for.")],
    keys_file: KeysFile = Path("keys.yaml"),
    name: Annotated[str | None, typer.Option(help="A label: who holds the key.")] = None,
    requests_per_minute: Annotated[int | None, typer.Option(min=1)] = None,
    max_concurrent_jobs: Annotated[int | None, typer.Option(min=1)] = None,
    max_pixels_per_day: Annotated[int | None, typer.Option(min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a new key for TENANT once; the keys file keeps only its SHA-256.

    A running cluster picks the key up at once (the file is re-read when it changes).
    """
    if not re.match(TENANT_PATTERN, tenant):
        message = f"--tenant {tenant!r}: lowercase letters, digits, '-' and '_'"
        raise fail(message, ExitCode.USAGE, as_json)
    limits = TenantLimits(
        requests_per_minute=requests_per_minute,
        max_concurrent_jobs=max_concurrent_jobs,
        max_pixels_per_day=max_pixels_per_day,
    )
    try:
        key = add_key(keys_file, tenant, limits, name)
    except ConfigError as exc:
        raise fail(str(exc), ExitCode.USAGE, as_json) from None
    if as_json:
        return emit({"tenant": tenant, "key": key, "keys_file": str(keys_file)})
    err.print(f"key for tenant {tenant!r} added to {keys_file} (shown once; store it now):")
    console.print(key)


@keys_app.command("list")
def list_keys(keys_file: KeysFile = Path("keys.yaml"), as_json: JsonOption = False) -> None:
    """Tenants, key hashes (a prefix) and limits; never a key."""
    try:
        entries = read_keys_file(keys_file).keys
    except ConfigError as exc:
        raise fail(str(exc), ExitCode.USAGE, as_json) from None
    if as_json:
        return emit(
            {
                "keys": [
                    entry.model_dump(mode="json", exclude={"sha256"})
                    | {"sha256_prefix": entry.sha256[:12]}
                    for entry in entries
                ]
            }
        )
    for entry in entries:
        limits = entry.limits.model_dump(exclude_none=True)
        console.print(f"{entry.tenant}\t{entry.sha256[:12]}\t{entry.name or ''}\t{limits}")
