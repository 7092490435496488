"""The work folder of a training run: each phase's weights, kept with the settings that
made them, so that a stopped run starts again from the last phase kept."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def phase_settings(settings: dict, model) -> dict:
    """`settings` and `model`'s architecture: what a kept phase must match."""
    architecture = {k: v for k, v in model.config.items() if not k.startswith("_")}
    return {**settings, "architecture": json.dumps(architecture, sort_keys=True, default=str)}


def kept_phase(work: Path, phase: str, settings: dict) -> dict | None:
    """What a run with the same `settings` kept of `phase` in `work`, if any."""
    kept = work / f"{phase}-phase.pt"
    if kept.exists():
        state = torch.load(kept, weights_only=False)
        if state["settings"] == settings:
            print(f"{phase}: kept from {kept}", flush=True)
            return state
    return None


def keep_phase(work: Path, phase: str, state: dict) -> None:
    """Write `state` (its "settings" among it) as `phase`'s, replacing any kept before."""
    work.mkdir(parents=True, exist_ok=True)
    torch.save(state, work / f"{phase}-phase.tmp")
    (work / f"{phase}-phase.tmp").rename(work / f"{phase}-phase.pt")
