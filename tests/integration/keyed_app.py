"""The config of a second application with keys on, shared by the tests that deploy one."""

from __future__ import annotations

from pathlib import Path

from core.config import ClusterConfig
from core.tenants import TenantLimits, add_key


def keyed_cpu_config(
    base: ClusterConfig, root: Path, acme_limits: TenantLimits | None = None
) -> tuple[ClusterConfig, str, str]:
    """`base`'s `fast` model alone on the CPU (one replica), its store under `root`, and
    keys from a file there: (config, acme's key, globex's key)."""
    keys = root / "keys.yaml"
    acme = add_key(keys, "acme", acme_limits or TenantLimits())
    globex = add_key(keys, "globex", TenantLimits())
    fast = base.models["fast"].model_dump(mode="json")
    fast.update(gpus_per_replica=0, autoscaling={"min_replicas": 1, "max_replicas": 1})
    data = base.model_dump(mode="json")
    data.update(
        models={"fast": fast},
        styles={},
        default_style=None,
        pipelines={},
        auth={"keys_file": str(keys)},
        storage={**data["storage"], "path": str(root / "store")},
    )
    return ClusterConfig.model_validate(data), acme, globex
