"""The version of a model deployment deployed with `serve.run`.

Serve restarts every replica of a deployment whose version changed, and gives a
deployment without one a new random version on each `serve.run`. So redeploying the
same config restarted every model's replicas (each loading its weights and rendering
its warm-up again: 50-60 s for 4 replicas here). With a version derived from what the
replicas run (the server class, its arguments, which hold the model's config, and
the code of the packages replicas import), a deployment restarts only when one of
those changes. Serve's own options (replica counts, autoscaling, queue limits: the
`SERVE_ONLY_FIELDS` of `core.deployment_options`) are not in the replicas' arguments,
so Serve applies their changes to the running replicas, adding or removing some.

Only `serve.run` reads it: a Serve config file (the Helm chart's `serveConfigV2`)
versions its deployments from the application's args, as Serve does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from core.weights_digest import weights_digest

__all__ = ["REPLICA_PACKAGES", "code_digest", "deployment_version"]

REPLICA_PACKAGES = ("core", "serve", "actors")
"""The project's packages a replica imports: their code is part of every version."""


def code_digest(root: Path | None = None) -> str:
    """sha256 of the Python files of `REPLICA_PACKAGES` under `root` (by default where
    this package is installed): each package's `weights_digest` of its `.py` files."""
    root = root if root is not None else Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in REPLICA_PACKAGES:
        digest.update(f"{package}\0{weights_digest(root / package, '*.py')}\n".encode())
    return digest.hexdigest()


def deployment_version(server: type, name: str, init_args: tuple[Any, ...], code: str) -> str:
    """The version of deployment `name` of `server` built with `init_args` (JSON data)
    from the code of digest `code` (`code_digest()`)."""
    described = {
        "server": f"{server.__module__}.{server.__qualname__}",
        "name": name,
        "args": init_args,
        "code": code,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]
