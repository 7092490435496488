"""Run records: round trip through both store backends, queries, ordering and diffs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from core.errors import NotFoundError, RequestError, StorageError
from core.records import Change, RunRecord, RunRegistry, diff_records, new_run_id, run_time
from core.store import ArtifactStore

T0 = datetime(2025, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)
SHA = "ab" * 32


def record(**fields) -> RunRecord:
    base = {
        "kind": "stage",
        "status": "done",
        "model": "sdxl-base",
        "model_source": "hf:stabilityai/sdxl@4a3f",
        "model_revision": "4a3f",
        "family": "sdxl",
        "style": "photo",
        "pipeline": "standard",
        "stage": "final",
        "prompt": "a red bicycle",
        "params": {"width": 1024, "height": 1024, "steps": 30, "guidance": 6.5},
        "seed": 7,
        "inputs": {"init_image": SHA},
        "timings": {"queued_s": 0.1, "compute_s": 2.5},
        "metrics": {"seam_score": 0.02},
        "outputs": {"image": "cas/ab/abab.png"},
        "cache": "miss",
    }
    return RunRecord(**(base | fields))


def test_round_trip_through_the_store(store: ArtifactStore) -> None:
    registry = RunRegistry(store)
    original = record(created_at=T0, campaign="spring", negative_prompt="blurry")
    key = registry.save(original)
    assert key == f"runs/2025/03/01/{original.id}.json"
    assert registry.get(original.id) == original
    stored = json.loads(store.get_bytes(key))
    assert stored["created_at"] == "2025-03-01T09:30:00.123456Z"
    assert stored["params"]["steps"] == 30 and stored["inputs"] == {"init_image": SHA}


def test_ids_sort_by_time_and_are_unique() -> None:
    assert new_run_id(T0) < new_run_id(T0 + timedelta(microseconds=1))
    assert new_run_id(T0) < new_run_id(T0 + timedelta(days=400))
    assert len({new_run_id(T0) for _ in range(2000)}) == 2000
    assert run_time(new_run_id(T0)) == T0
    assert new_run_id(T0).startswith("20250301-093000-123456-")


def test_id_and_created_at_fill_each_other() -> None:
    from_time = record(created_at=T0)
    assert run_time(from_time.id) == T0
    from_id = record(id="20240229-235959-000001-deadbeef")
    assert from_id.created_at == datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC)
    fresh = record()
    assert abs(fresh.created_at - datetime.now(UTC)) < timedelta(seconds=5)


def test_records_reject_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        record(colour="red")
    with pytest.raises(ValidationError, match="inputs"):
        record(inputs={"init_image": "not-a-hash"})
    with pytest.raises(ValidationError, match="status"):
        record(status="finished")
    with pytest.raises(ValidationError, match="id"):
        record(id="run-1")


def test_get_missing_or_malformed_id(store: ArtifactStore) -> None:
    registry = RunRegistry(store)
    with pytest.raises(NotFoundError) as caught:
        registry.get("20250301-093000-123456-00000000")
    assert caught.value.field == "id" and "20250301-093000-123456-00000000" in caught.value.message
    with pytest.raises(RequestError) as caught:
        registry.get("../../etc/passwd")
    assert caught.value.field == "id"


def test_corrupt_record_is_a_storage_error(store: ArtifactStore) -> None:
    registry = RunRegistry(store)
    run_id = new_run_id(T0)
    store.put_bytes(registry.key(run_id), b'{"id": "oops"}')
    with pytest.raises(StorageError, match="not a valid run record"):
        registry.get(run_id)


@pytest.fixture
def history(store: ArtifactStore) -> tuple[RunRegistry, list[RunRecord]]:
    """Five runs over three days, saved out of order."""
    runs = [
        record(created_at=T0, model="draft", campaign="spring"),
        record(created_at=T0 + timedelta(hours=1), style="poster", campaign="spring"),
        record(created_at=T0 + timedelta(days=1), pipeline="quick", status="failed", error="OOM"),
        record(created_at=T0 + timedelta(days=1, hours=2), model="draft", style="poster"),
        record(created_at=T0 + timedelta(days=2), campaign="summer"),
    ]
    registry = RunRegistry(store)
    for run in (runs[3], runs[0], runs[4], runs[2], runs[1]):
        registry.save(run)
    return registry, runs


def test_list_is_newest_first_and_filters(history) -> None:
    registry, runs = history

    def ids(found: list[RunRecord]) -> list[str]:
        return [run.id for run in found]

    assert ids(registry.list()) == [r.id for r in reversed(runs)]
    assert ids(registry.list(limit=2)) == [runs[4].id, runs[3].id]
    assert ids(registry.list(model="draft")) == [runs[3].id, runs[0].id]
    assert ids(registry.list(style="poster")) == [runs[3].id, runs[1].id]
    assert ids(registry.list(pipeline="quick")) == [runs[2].id]
    assert ids(registry.list(campaign="spring")) == [runs[1].id, runs[0].id]
    assert ids(registry.list(status="failed")) == [runs[2].id]
    assert ids(registry.list(model="draft", style="poster")) == [runs[3].id]
    assert registry.list(model="nobody") == []


def test_list_by_date(history) -> None:
    registry, runs = history
    day2 = datetime(2025, 3, 2)  # naive: taken as UTC
    assert [r.id for r in registry.list(since=day2)] == [runs[4].id, runs[3].id, runs[2].id]
    assert [r.id for r in registry.list(until=day2)] == [runs[1].id, runs[0].id]
    one_hour = registry.list(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2))
    assert [r.id for r in one_hour] == [runs[1].id]
    assert registry.list(since=T0 + timedelta(days=1), until=T0 + timedelta(days=1)) == []


def test_diff_lists_every_changed_field() -> None:
    a = record(created_at=T0)
    b = record(
        created_at=T0 + timedelta(hours=1),
        seed=8,
        params={"width": 1024, "height": 1024, "steps": 40, "guidance": 6.5, "strength": 0.3},
        timings={"queued_s": 0.1, "compute_s": 3.5},
        cache="hit",
    )
    assert diff_records(a, b) == [
        Change("cache", "miss", "hit"),
        Change("params.steps", 30, 40),
        Change("params.strength", None, 0.3),
        Change("seed", 7, 8),
        Change("timings.compute_s", 2.5, 3.5),
    ]
    assert diff_records(a, a.model_copy(update={"id": new_run_id()})) == []


def test_registry_diff_by_id(store: ArtifactStore) -> None:
    registry = RunRegistry(store)
    a, b = record(created_at=T0), record(created_at=T0, prompt="a blue bicycle")
    registry.save(a)
    registry.save(b)
    assert registry.diff(a.id, b.id) == [("prompt", "a red bicycle", "a blue bicycle")]
