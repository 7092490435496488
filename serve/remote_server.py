"""`RemoteModelServer`: the Serve deployment of a hosted model (family 'remote').

The same contract as `ModelServer` (`render(GenerateRequest) -> GenerateResult`,
`info()`, the same constructor arguments), so the dispatcher, pipelines,
campaigns and the typography gate call it by name like any model. It books no
GPU and loads no weights: each call goes to the provider through
`core.remote.caller.RemoteCaller`, bounded by the limiter all its replicas share
(`actors.remote_limiter`). The API key is read from the environment variable the
config names (a Kubernetes Secret in the chart).
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve

from actors.remote_limiter import SharedLimiter
from core.config import APP_NAME, ModelConfig
from core.remote.caller import RemoteCaller
from core.remote.http import HttpTransport
from core.remote.providers import adapter_for
from core.schemas import GenerateRequest, GenerateResult


def _replica_id() -> str:
    return serve.get_replica_context().replica_id.unique_id


@serve.deployment
class RemoteModelServer:
    """Renders on a provider's API; one deployment per hosted model."""

    def __init__(self, model_name: str, model: dict[str, Any], cache_dir: str | None = None):
        self.model_name = model_name
        self.config = ModelConfig.model_validate(model)
        remote = self.config.remote
        if remote is None:
            raise ValueError(f"model {model_name} is not hosted (family {self.config.family})")
        self.remote = remote
        context = serve.get_replica_context()
        app_name = getattr(context, "app_name", None) or APP_NAME
        self.limiter = SharedLimiter(app_name, model_name, remote)
        self.http = HttpTransport()
        self.caller = RemoteCaller(
            model_name,
            remote,
            adapter_for(remote.provider),
            send=self.http.send,
            fetch=self.http.fetch,
            limiter=self.limiter,
            key=lambda: os.environ.get(remote.key_env),
            identity=_replica_id,
        )
        self._started = False

    async def render(self, request: GenerateRequest) -> GenerateResult:
        """One image from the provider, exactly the request's size (see `RemoteCaller`)."""
        if not self._started:
            await self.limiter.start()
            self._started = True
        return await self.caller.render(request)

    async def info(self) -> dict[str, Any]:
        """Where this replica runs and what it calls (never the key, only whether it is set)."""
        return {
            "model": self.model_name,
            "replica": _replica_id(),
            "gpu_ids": [],
            "cuda_visible_devices": "",
            "device": "remote",
            "dtype": None,
            "pid": os.getpid(),
            "provider": self.remote.provider,
            "provider_model": self.remote.model,
            "base_url": self.caller.base_url,
            "api_key_env": self.remote.key_env,
            "api_key_set": bool(os.environ.get(self.remote.key_env)),
        }

    async def limits(self) -> dict[str, float]:
        """The shared limiter's figures: in flight now, most in flight seen, starts, ..."""
        return await self.limiter.stats()

    def check_health(self) -> None:
        """Nothing local can break: provider failures fail their calls, not the replica."""
