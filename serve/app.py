"""The Serve application builder: one ingress plus one model server per model.

`ModelServer` hosts diffusion models, `UpscalerServer` models of family 'upscaler' and
`RemoteModelServer` hosted models (family 'remote': a provider's API, no GPU).

`build_app` is the import path used everywhere: the embedded local cluster,
`serve run serve.app:build_app config_path=configs/local.yaml`, and the Helm
chart's `serveConfigV2` (which passes the config itself as `args.config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.serve import Application

from core.config import INGRESS_DEPLOYMENT, ClusterConfig
from core.config_file import config_from_dict, load_config
from core.deployment_options import model_deployment_options
from serve.ingress import Ingress
from serve.model_server import ModelServer
from serve.remote_server import RemoteModelServer
from serve.upscaler_server import UpscalerServer

SERVERS = {"upscaler": UpscalerServer, "remote": RemoteModelServer}


def build_app(args: dict[str, Any]) -> Application:
    """Build from Serve args: `{"config": {...}}` or `{"config_path": "file.yaml"}`."""
    if "config" in args:
        config = config_from_dict(args["config"], source="application args")
    elif "config_path" in args:
        config = load_config(args["config_path"])
    else:
        raise ValueError("application args need 'config' (a mapping) or 'config_path'")
    return application(config)


def application(config: ClusterConfig) -> Application:
    """The bound application graph for a validated config.

    Relative paths in the config are made absolute here, in the process that
    builds the app, because replicas run in other working directories.
    """
    storage = config.storage.model_copy(update={"path": config.storage.path.resolve()})
    config = config.model_copy(update={"storage": storage})
    cache_dir = str(Path(config.model_cache_dir).expanduser().resolve())
    handles = {
        name: SERVERS.get(model.family, ModelServer)
        .options(**model_deployment_options(name, model))
        .bind(name, model.model_dump(mode="json"), cache_dir)
        for name, model in config.models.items()
    }
    return Ingress.options(name=INGRESS_DEPLOYMENT).bind(config.model_dump(mode="json"), handles)
