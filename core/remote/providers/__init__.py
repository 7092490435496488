"""One adapter module per provider; `adapter_for` picks one by the config's name."""

from __future__ import annotations

from typing import cast

from core.remote.providers import gemini, ideogram, imagen, openai
from core.remote.wire import Adapter

__all__ = ["ADAPTERS", "adapter_for"]

ADAPTERS: dict[str, Adapter] = {
    module.NAME: cast(Adapter, module) for module in (openai, ideogram, imagen, gemini)
}


def adapter_for(provider: str) -> Adapter:
    """The adapter of `provider` (one of `core.remote.config.PROVIDERS`)."""
    try:
        return ADAPTERS[provider]
    except KeyError:
        raise ValueError(
            f"no adapter for provider {provider!r} (one of {sorted(ADAPTERS)})"
        ) from None
