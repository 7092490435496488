"""Experiment records: what one suite run measured, for which models, kept in the store.

Records live beside the run records, under ``experiments/<yyyy>/<mm>/<dd>/<id>.json``
(ids like run ids: they sort by creation time). Each carries its owner's tenant.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeFloat,
    ValidationError,
    model_validator,
)

from core.errors import NotFoundError, StorageError
from core.records import RUN_ID_PATTERN, new_run_id, run_time
from core.store import ArtifactStore
from core.tenants import current_tenant, visible

__all__ = ["CaseResult", "ExperimentRecord", "ExperimentRegistry", "ModelUnderTest", "Sample"]


class ModelUnderTest(BaseModel):
    """A model an experiment judged, pinned: its name, source and revision."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(description="Model name in the cluster config.")
    source: str | None = Field(None, description="Where its weights came from.")
    revision: str | None = Field(None, description="Pinned weights revision, if any.")
    family: str | None = Field(None, description="diffusers pipeline family.")


class Sample(BaseModel):
    """One render of one case, one seed, one model, and what it scored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    case: str
    model: str
    seed: int
    status: Literal["done", "gate_failed", "failed"]
    run_id: str | None = Field(None, description="The render's run record.")
    error: str | None = None
    latency_s: NonNegativeFloat = Field(description="Request to image, seen by the client.")
    cost_usd: NonNegativeFloat = Field(0.0, description="Hosted calls' cost (0 on own GPUs).")
    width: int | None = None
    height: int | None = None
    large: bool = Field(False, description="Rendered as a large-format job (tiled).")
    adherence: float | None = Field(None, description="Scorer's score, when it applies.")
    clauses: dict[str, bool] = Field(default_factory=dict, description="Per clause, if known.")
    hires_kept: bool | None = Field(
        None, description="Hires: every clause that held on the base image holds here too."
    )
    hires_lost: list[str] = Field(
        default_factory=list, description="Hires: the clauses that held on the base image only."
    )
    gate_passed: bool | None = Field(None, description="Typography gate, for text cases.")
    seam_score: float | None = Field(None, description="Large-format renders' seam score.")


class CaseResult(BaseModel):
    """A case's figures for one model (over its seeds)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    case: str
    model: str
    metrics: dict[str, float] = Field(default_factory=dict)


class ExperimentRecord(BaseModel):
    """One run of a suite against one or more models."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    id: str = Field(pattern=RUN_ID_PATTERN, description="Sortable unique id.")
    created_at: AwareDatetime
    suite: str = Field(description="Suite name.")
    suite_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Suite file and inputs.")
    suite_content: dict[str, JsonValue] = Field(description="The suite as run.")
    scorer: str = Field(description="Adherence scorer used.")
    models: list[ModelUnderTest] = Field(min_length=1)
    samples: list[Sample] = Field(default_factory=list)
    cases: list[CaseResult] = Field(default_factory=list)
    summary: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Model -> metric -> value over the whole suite."
    )
    baseline: str | None = Field(None, description="Experiment compared against, if any.")
    regressions: list[str] = Field(default_factory=list, description="Gate failures, in words.")
    owner: str | None = Field(None, max_length=64, description="Tenant that ran it.")

    @model_validator(mode="before")
    @classmethod
    def _id_and_time(cls, data: Any) -> Any:
        if isinstance(data, dict) and "id" not in data:
            data = {**data, "id": new_run_id()}
        if (
            isinstance(data, dict)
            and "created_at" not in data
            and re.match(RUN_ID_PATTERN, str(data["id"]))
        ):
            data = {**data, "created_at": run_time(data["id"])}
        return data


class ExperimentRegistry:
    """Experiment records kept in an artifact store."""

    def __init__(self, store: ArtifactStore, prefix: str = "experiments"):
        self.store = store
        self.prefix = prefix

    def key(self, experiment_id: str) -> str:
        return f"{self.prefix}/{run_time(experiment_id):%Y/%m/%d}/{experiment_id}.json"

    def save(self, record: ExperimentRecord) -> ExperimentRecord:
        """Write a record, owned by the tenant being served (when there is one)."""
        if current_tenant.get() is not None:
            record = record.model_copy(update={"owner": current_tenant.get()})
        self.store.put_bytes(self.key(record.id), record.model_dump_json(indent=2).encode())
        return record

    def get(self, experiment_id: str) -> ExperimentRecord:
        """The record, if the current tenant may see it; `NotFoundError` otherwise."""
        key = self.key(experiment_id)
        try:
            record = self._parse(key, self.store.get_bytes(key))
        except NotFoundError:
            record = None
        if record is None or not visible(record.owner, current_tenant.get()):
            raise NotFoundError("id", f"no experiment {experiment_id!r}")
        return record

    def list(self, limit: int = 50, suite: str | None = None) -> list[ExperimentRecord]:
        """The current tenant's records, newest first."""
        found = []
        for key in sorted(self.store.list_keys(f"{self.prefix}/"), reverse=True):
            if not key.endswith(".json"):
                continue
            record = self._parse(key, self.store.get_bytes(key))
            if not visible(record.owner, current_tenant.get()):
                continue
            if suite is None or record.suite == suite:
                found.append(record)
            if len(found) >= limit:
                break
        return found

    @staticmethod
    def _parse(key: str, data: bytes) -> ExperimentRecord:
        try:
            return ExperimentRecord.model_validate_json(data)
        except ValidationError as exc:
            raise StorageError(key, f"not a valid experiment ({exc.error_count()} errors)") from exc
