"""Run records of hosted calls: what they keep, old records still load, filter by provider."""

from __future__ import annotations

import json

from core.records import RunRecord, RunRegistry
from core.remote.record import ProviderCall, provider_fields, total_cost
from core.store import LocalStore

CALL = {
    "provider": "ideogram",
    "provider_model": "V_2",
    "request_id": "abc",
    "seed": 77,
    "revised_prompt": "a kite, poster",
    "mode": "txt2img",
    "latency_s": 1.25,
    "waited_s": 0.5,
    "retries": 1,
    "cost_usd": 0.08,
    "size": {"asked": [1000, 600], "requested": "ASPECT_16_10", "returned": [1280, 800]},
    "ignored": ["steps", "guidance"],
}


def record(provider: dict | None, **fields) -> RunRecord:
    return RunRecord(
        kind="render", status="done", model="layout", model_source="remote:ideogram/V_2",
        **provider_fields(provider), **fields,
    )  # fmt: skip


def test_a_hosted_call_is_recorded_with_its_cost():
    made = record(CALL)
    assert made.provider == ProviderCall(**CALL) and made.cost_usd == 0.08
    assert RunRecord.model_validate_json(made.model_dump_json()) == made


def test_records_written_before_hosted_models_still_load():
    old = record(None).model_dump(mode="json")
    old.pop("provider"), old.pop("cost_usd")
    loaded = RunRecord.model_validate_json(json.dumps(old))
    assert loaded.provider is None and loaded.cost_usd is None


def test_runs_filter_by_provider(tmp_path):
    registry = RunRegistry(LocalStore(tmp_path))
    ideogram = record(CALL)
    imagen = record({**CALL, "provider": "imagen", "provider_model": "imagen-4.0-generate-001"})
    local = record(None)
    for made in (ideogram, imagen, local):
        registry.save(made)
    assert [r.id for r in registry.list(provider="ideogram")] == [ideogram.id]
    assert [r.id for r in registry.list(provider="imagen")] == [imagen.id]
    assert len(registry.list()) == 3


def test_total_cost_is_none_without_hosted_calls():
    assert total_cost([None, None]) is None
    assert total_cost([0.08, None, 0.04]) == 0.12
