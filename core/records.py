"""Run records: the experiment registry of every render and stage.

A `RunRecord` says what ran (model, pinned revision, prompt, every parameter,
seed, input hashes), how it went (status, timings, metrics, error) and what it
produced (output keys). `RunRegistry` keeps records as JSON in the artifact
store under ``runs/<yyyy>/<mm>/<dd>/<id>.json``, so every pod of a cluster sees
the same history. Run ids start with their UTC creation time, so they sort in
creation order and name their own day folder.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import NotFoundError, RequestError, StorageError
from core.model_source import parse_source
from core.remote.record import ProviderCall
from core.store import ArtifactStore
from core.tenants import current_request_id, current_tenant
from core.typography.results import TypographyReport

if TYPE_CHECKING:  # core.config imports modules that import this one
    from core.config import ModelConfig

__all__ = [
    "Change",
    "RunRecord",
    "RunRegistry",
    "diff_records",
    "model_fields",
    "new_run_id",
    "run_time",
    "with_typography",
]

RUN_ID_PATTERN = r"^\d{8}-\d{6}-\d{6}-[0-9a-f]{8}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
_ID_TIME_FORMAT = "%Y%m%d-%H%M%S-%f"
_IGNORED_IN_DIFF = {"id", "created_at"}

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def new_run_id(at: datetime | None = None) -> str:
    """A unique run id that sorts by time: ``YYYYmmdd-HHMMSS-ffffff-<8 hex>`` (UTC)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    return f"{at.strftime(_ID_TIME_FORMAT)}-{secrets.token_hex(4)}"


def run_time(run_id: str) -> datetime:
    """The UTC creation time encoded in a run id; `RequestError` if it is not a run id."""
    if not _RUN_ID.match(run_id):
        raise RequestError(
            "id", f"{run_id!r} is not a run id (like 20250101-120000-000000-1a2b3c4d)"
        )
    try:
        return datetime.strptime(run_id[:22], _ID_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # the right shape, an impossible date (month 13, Feb 30)
        raise RequestError("id", f"{run_id!r} is not a run id (its date is impossible)") from None


class RunRecord(BaseModel):
    """What one render or stage ran, how it went and what it produced."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    id: str = Field(
        pattern=RUN_ID_PATTERN, description="Sortable unique id (default: from created_at)."
    )
    created_at: AwareDatetime = Field(description="UTC creation time (default: from the id).")
    kind: Literal["render", "stage", "hires", "upscale", "campaign-item"] = Field(
        description="What ran: a plain render, a pipeline stage, a large-format render, ..."
    )
    status: Literal[
        "queued", "running", "done", "failed", "awaiting_approval", "rejected", "cancelled"
    ] = Field(description="Where the run stands.")
    model: str = Field(description="Model name in the cluster config.")
    model_source: str = Field(description="Where the weights came from (hf:..., s3://..., tiny).")
    model_revision: str | None = Field(None, description="Pinned weights revision, if any.")
    family: str | None = Field(None, description="diffusers pipeline family (sd, sdxl, ...).")
    style: str | None = Field(None, description="Style label the request was routed by.")
    pipeline: str | None = Field(None, description="Pipeline the stage belongs to.")
    stage: str | None = Field(None, description="Stage name within the pipeline.")
    prompt: str = Field("", description="Prompt as sent to the model.")
    negative_prompt: str = Field("", description="Negative prompt as sent to the model.")
    params: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Every parameter: width, height, steps, guidance, strength, scheduler, ...",
    )
    seed: int | None = Field(None, ge=0, description="Job seed.")
    inputs: dict[str, Sha256] = Field(
        default_factory=dict, description="Input artifact name -> sha256 of its bytes."
    )
    timings: dict[str, NonNegativeFloat] = Field(
        default_factory=dict, description="Seconds: queued_s, compute_s, blend_s, total_s, ..."
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Quality figures: seam_score, ..."
    )
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Output name -> artifact key or URI."
    )
    parent_id: str | None = Field(
        None, pattern=RUN_ID_PATTERN, description="Run this one derives from (previous stage)."
    )
    campaign: str | None = Field(None, description="Campaign the run belongs to.")
    cache: Literal["hit", "miss"] | None = Field(
        None, description="Whether a stage output came from the stage cache."
    )
    error: str | None = Field(None, description="Why the run failed.")
    typography: dict[str, JsonValue] | None = Field(
        None,
        description="Text boxes: how each was typeset and painted, and the typography "
        "gate's figures per box (see core.typography.results.TypographyReport).",
    )
    provider: ProviderCall | None = Field(
        None,
        description="A hosted model's call: provider, its model and request id, seed and "
        "revised prompt if returned, latency, retries, sizes and cost.",
    )
    cost_usd: NonNegativeFloat | None = Field(
        None,
        description="What the run's hosted calls cost in USD (a pipeline run or campaign "
        "item: the sum over its stages); None when no hosted model was called.",
    )
    owner: str | None = Field(
        None, max_length=64, description="Tenant of the API key that made the run."
    )
    request_id: str | None = Field(
        None, max_length=64, description="Id of the HTTP request that made the run."
    )

    @model_validator(mode="before")
    @classmethod
    def _id_and_time(cls, data: Any) -> Any:
        """Fill whichever of id / created_at is missing from the other (or from now)."""
        if not isinstance(data, dict) or ("id" in data and "created_at" in data):
            return data
        data = dict(data)
        if "id" in data:
            if isinstance(data["id"], str) and _RUN_ID.match(data["id"]):
                data["created_at"] = run_time(data["id"])
        else:
            created = data.get("created_at")
            at = created if isinstance(created, datetime) and created.tzinfo else None
            data["id"] = new_run_id(at)
            data.setdefault("created_at", run_time(data["id"]))
        return data

    @field_validator("created_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class Change(NamedTuple):
    """One field that differs between two runs (None where a field is absent)."""

    field: str
    a: Any
    b: Any


def _flatten(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for name, item in value.items():
            flat.update(_flatten(item, f"{path}.{name}" if path else name))
        return flat
    return {path: value} if path else {}


def diff_records(a: RunRecord, b: RunRecord) -> list[Change]:
    """Every field that differs, nested dicts as dotted paths, sorted; id/created_at ignored."""
    flat_a = _flatten(a.model_dump(mode="json", exclude=_IGNORED_IN_DIFF))
    flat_b = _flatten(b.model_dump(mode="json", exclude=_IGNORED_IN_DIFF))
    return [
        Change(path, flat_a.get(path), flat_b.get(path))
        for path in sorted(flat_a.keys() | flat_b.keys())
        if flat_a.get(path) != flat_b.get(path)
    ]


def _utc(value: datetime) -> datetime:
    """Aware datetimes in UTC; naive ones are taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RunRegistry:
    """Run records kept in an artifact store."""

    def __init__(self, store: ArtifactStore, prefix: str = "runs"):
        self.store = store
        self.prefix = prefix

    def key(self, run_id: str) -> str:
        """Store key of a run's record: ``<prefix>/<yyyy>/<mm>/<dd>/<id>.json``."""
        return f"{self.prefix}/{run_time(run_id):%Y/%m/%d}/{run_id}.json"

    def save(self, record: RunRecord) -> str:
        """Write (or overwrite) a record; return its key.

        A record without an owner gets the tenant (and request id) of the request
        being served, when there is one.
        """
        record = _stamped(record)
        return self.store.put_bytes(self.key(record.id), record.model_dump_json(indent=2).encode())

    def get(self, run_id: str) -> RunRecord:
        """The record of `run_id`; `NotFoundError` if there is none."""
        key = self.key(run_id)
        try:
            data = self.store.get_bytes(key)
        except NotFoundError:
            raise NotFoundError("id", f"no run {run_id!r}") from None
        return self._parse(key, data)

    def diff(self, a: str, b: str) -> list[Change]:
        """What changed from run `a` to run `b` (see `diff_records`)."""
        return diff_records(self.get(a), self.get(b))

    def list(
        self,
        *,
        model: str | None = None,
        style: str | None = None,
        pipeline: str | None = None,
        campaign: str | None = None,
        status: str | None = None,
        provider: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        owner: str | None = None,
    ) -> list[RunRecord]:
        """Records that match every given filter, newest first (`provider`: hosted calls to it).

        `since` is inclusive and `until` exclusive (naive times are UTC). Day folders
        outside the range are skipped without being read.
        """
        try:
            since = _utc(since) if since else None
            until = _utc(until) if until else None
        except (OverflowError, ValueError):
            raise RequestError("since", "since/until lie outside the representable time") from None
        filters = {
            "model": model,
            "style": style,
            "pipeline": pipeline,
            "campaign": campaign,
            "status": status,
            "owner": owner,
        }
        wanted = {name: value for name, value in filters.items() if value is not None}
        found: list[RunRecord] = []
        for key in sorted(self.store.list_keys(f"{self.prefix}/"), reverse=True):
            run_id = key.rpartition("/")[2].removesuffix(".json")
            if not _RUN_ID.match(run_id) or not _day_in_range(run_time(run_id), since, until):
                continue
            record = self._parse(key, self.store.get_bytes(key))
            if any(getattr(record, name) != value for name, value in wanted.items()):
                continue
            if provider is not None and _provider_of(record) != provider:
                continue
            if (since and record.created_at < since) or (until and record.created_at >= until):
                continue
            found.append(record)
            if limit is not None and len(found) >= limit:
                break
        return found

    @staticmethod
    def _parse(key: str, data: bytes) -> RunRecord:
        try:
            return RunRecord.model_validate_json(data)
        except ValidationError as exc:
            raise StorageError(key, f"not a valid run record ({exc.error_count()} errors)") from exc


def _stamped(record: RunRecord) -> RunRecord:
    update = {}
    if record.owner is None and current_tenant.get() is not None:
        update["owner"] = current_tenant.get()
    if record.request_id is None and current_request_id.get() is not None:
        update["request_id"] = current_request_id.get()
    return record.model_copy(update=update) if update else record


def _provider_of(record: RunRecord) -> str | None:
    return record.provider.provider if record.provider is not None else None


def _day_in_range(at: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or at.date() >= since.date()) and (
        until is None or at.date() <= until.date()
    )


def with_typography(record: RunRecord, report: TypographyReport) -> RunRecord:
    """`record` with the gate's report; failed, its image moved to review, when the gate failed."""
    update: dict[str, Any] = {"typography": report.model_dump(mode="json")}
    if not report.passed:
        outputs = dict(record.outputs)
        if "image" in outputs:
            outputs["review_image"] = outputs.pop("image")
        update.update(status="failed", error=report.message(), outputs=outputs)
    return record.model_copy(update=update)


def model_fields(name: str, model: ModelConfig) -> dict[str, Any]:
    """The record fields that pin which weights made a render: name, source, revision, family."""
    return {
        "model": name,
        "model_source": model.source,
        "model_revision": parse_source(model.source).revision,
        "family": model.family,
    }
