"""The `remote:` section of a hosted model entry (family 'remote').

```yaml
models:
  layout-ideogram:
    family: remote
    remote:
      provider: ideogram        # openai | ideogram | imagen | gemini
      model: V_2                # the provider's model id
      base_url: null            # default: the provider's public endpoint
      api_key_env: IDEOGRAM_API_KEY
      max_concurrency: 4        # calls in flight to the provider
      requests_per_minute: 60
      timeout_s: 120
      cost_per_image: 0.08      # in USD, recorded with every image
      refine_model: quality     # optional: the local model that refines its large renders
```

The key itself is never in the config: only the name of the environment variable
that holds it (a Kubernetes Secret in the chart).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_KEY_ENV",
    "PROVIDERS",
    "Provider",
    "RemoteConfig",
    "refine_model_problems",
    "remote_defaults",
    "remote_problems",
    "remote_source",
]

Provider = Literal["openai", "ideogram", "imagen", "gemini"]
PROVIDERS: tuple[str, ...] = ("openai", "ideogram", "imagen", "gemini")
DEFAULT_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "ideogram": "IDEOGRAM_API_KEY",
    "imagen": "GEMINI_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
REMOTE_SOURCE_PREFIX = "remote:"


class RemoteConfig(BaseModel):
    """A provider's image API: which model, where, with which key, at what rate and price."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    provider: Provider = Field(..., description="Whose API: openai, ideogram, imagen or gemini.")
    model: str = Field(
        ...,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="The provider's model id (gpt-image-1, dall-e-3, V_2, V_3, "
        "imagen-4.0-generate-001, gemini-2.5-flash-image, ...).",
    )
    base_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="API root (a proxy, a test double); default: the provider's public endpoint.",
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the API key (default: OPENAI_API_KEY, "
        "IDEOGRAM_API_KEY or GEMINI_API_KEY); the key itself never goes in the config.",
    )
    max_concurrency: int = Field(
        4, ge=1, le=1000, description="Calls in flight to the provider, across every replica."
    )
    requests_per_minute: float = Field(
        60,
        gt=0,
        le=100000,
        description="Calls started per minute, across every replica (retries count); starts "
        "are spaced 60/requests_per_minute seconds apart.",
    )
    timeout_s: float = Field(
        120, gt=0, le=3600, description="Longest one call may take (an error, never a hang)."
    )
    cost_per_image: float = Field(
        0.0, ge=0, le=1000, description="USD per image, recorded with every image."
    )
    max_retries: int = Field(
        4, ge=0, le=20, description="Retries of a call answered 429 or 5xx before it fails."
    )
    max_retry_wait_s: float = Field(
        60,
        ge=0,
        le=3600,
        description="Longest wait before one retry: a Retry-After beyond it fails the call, "
        "and exponential backoff (with jitter) is capped at it.",
    )

    refine_model: str | None = Field(
        None,
        max_length=64,
        description="A local model of the cluster that refines this model's large renders "
        "(hires, fused) tile by tile over the hosted base image; unset, they are a 422.",
    )

    @property
    def key_env(self) -> str:
        """The environment variable the API key is read from."""
        return self.api_key_env or DEFAULT_KEY_ENV[self.provider]


def remote_source(remote: dict[str, Any] | RemoteConfig) -> str:
    """The `source` a hosted model entry records: ``remote:<provider>/<model>``."""
    if isinstance(remote, RemoteConfig):
        return f"{REMOTE_SOURCE_PREFIX}{remote.provider}/{remote.model}"
    return f"{REMOTE_SOURCE_PREFIX}{remote.get('provider')}/{remote.get('model')}"


def remote_defaults(data: Any) -> Any:
    """A raw model entry with the defaults of family 'remote' filled in.

    A hosted model books no GPU (`gpus_per_replica` 0), takes any size
    (`latent_factor` 1, the output is resized to exact) and records its source as
    ``remote:<provider>/<model>``; entries of other families are returned unchanged.
    """
    if not isinstance(data, dict) or data.get("family") != "remote":
        return data
    data = dict(data)
    remote = data.get("remote")
    if remote is None:
        raise ValueError("family 'remote' needs a 'remote' section (provider, model, ...)")
    if isinstance(remote, dict | RemoteConfig) and "source" not in data:
        data["source"] = remote_source(remote)
    data.setdefault("gpus_per_replica", 0)
    data.setdefault("latent_factor", 1)
    data.setdefault("native_resolution", 1024)
    return data


def remote_problems(
    family: str, source: str, remote: RemoteConfig | None, gpus: float
) -> list[str]:
    """What is inconsistent between a model entry's family, source, remote section and GPUs."""
    problems = []
    if family == "remote":
        if remote is None:
            problems.append("family 'remote' needs a 'remote' section (provider, model, ...)")
        elif source != remote_source(remote):
            problems.append(
                f"a hosted model's source is {remote_source(remote)!r} (or leave it out), "
                f"got {source!r}"
            )
        if gpus > 0:
            problems.append(f"a hosted model books no GPU: gpus_per_replica must be 0, got {gpus}")
    else:
        if remote is not None:
            problems.append(f"a 'remote' section needs family 'remote', not {family!r}")
        if source.startswith(REMOTE_SOURCE_PREFIX):
            problems.append(f"source {source!r} is a hosted model: set family 'remote'")
    return problems


def refine_model_problems(models: dict[str, Any]) -> list[str]:
    """Hosted models whose `refine_model` is not a local image model of the cluster."""
    problems = []
    for name, model in models.items():
        refiner = model.remote.refine_model if model.remote is not None else None
        if refiner is None:
            continue
        found = models.get(refiner)
        if found is None:
            problems.append(f"models.{name}.remote.refine_model {refiner!r} is not a model")
        elif found.family in ("remote", "upscaler"):
            problems.append(
                f"models.{name}.remote.refine_model {refiner!r} must be a local image model, "
                f"not family {found.family!r}"
            )
    return problems
