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

from core.config import INGRESS_DEPLOYMENT, ClusterConfig, ModelConfig
from core.config_file import config_from_dict, load_config
from core.deployment_options import SERVE_ONLY_FIELDS, model_deployment_options
from serve.deployment_version import code_digest, deployment_version
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
    code = code_digest()
    handles = {
        name: model_server(name, model, cache_dir, code) for name, model in config.models.items()
    }
    return Ingress.options(name=INGRESS_DEPLOYMENT).bind(config.model_dump(mode="json"), handles)


def model_server(name: str, model: ModelConfig, cache_dir: str, code: str) -> Application:
    """The bound deployment of one model, versioned by what its replicas run
    (`serve.deployment_version`), so that `serve.run` restarts it only when that changes;
    its replica counts and queue limits are Serve's options, not its replicas' config."""
    server = SERVERS.get(model.family, ModelServer)
    args = (name, model.model_dump(mode="json", exclude=set(SERVE_ONLY_FIELDS)), cache_dir)
    options = model_deployment_options(name, model)
    version = deployment_version(server.func_or_class, options["name"], args, code)
    # Serve takes a version only through its internal flag since `version` left the public
    # options (which stay set publicly: Serve keeps the names of options a user set).
    return server.options(**options).options(version=version, _internal=True).bind(*args)
