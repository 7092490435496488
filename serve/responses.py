"""The JSON answers of the API as pydantic models, so the OpenAPI schema is real.

Each model names every field a route answers today. Answers keep fields these
models do not name yet (`extra="allow"`), and routes leave out the fields they
did not set (`response_model_exclude_unset`), so declaring a model never
changes an answer: it documents it and checks its types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from core.campaign.progress import CampaignState
from core.config import LimitsConfig
from core.jobs.model import Delivery, JobError, JobKind, JobStatus, Progress
from core.pipelines import StageConfig
from core.schemas import ModelSummary, RenderResponse

__all__ = [
    "ANSWER",
    "BINARY",
    "ERRORS",
    "CampaignReport",
    "CampaignSubmitted",
    "CampaignView",
    "ClusterStatus",
    "JobList",
    "JobView",
    "ModelsAnswer",
    "PipelineList",
    "PipelineRunView",
    "RenderAnswer",
    "RenderView",
    "accepted_as",
]

# Keyword arguments for a route with a response model: unset fields stay out.
ANSWER: dict[str, Any] = {"response_model_exclude_unset": True}
# The OpenAPI content of an answer that is bytes (an image, an artifact).
BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}


class Answer(BaseModel):
    """Base of every answer: fields not declared here still reach the client."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ErrorDetail(BaseModel):
    field: str | None = Field(description="The request field to fix (None: not one field).")
    message: str = Field(description="What went wrong, in words (no paths or tracebacks).")


class Problem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer (`/readyz`'s 503 aside)."""

    error: ErrorDetail
    problems: list[Problem | str] | None = Field(
        None, description="Every problem found (422 for a request body or a manifest)."
    )
    request_id: str | None = Field(None, description="Also in the run record and server log.")


# `responses=` of every router: what an error answer looks like.
ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "The request cannot be served as sent."},
    "5XX": {"model": ErrorBody, "description": "The cluster failed or is busy; retry later."},
}


def accepted_as(model: type[BaseModel], what: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that may answer 202 (Location and Retry-After headers)."""
    headers = {
        "Location": {"description": "Where to follow the job.", "schema": {"type": "string"}},
        "Retry-After": {
            "description": "Seconds before looking again.",
            "schema": {"type": "integer"},
        },
    }
    return {202: {"model": model, "description": f"{what} (not finished yet).", "headers": headers}}


class ModelsAnswer(Answer):
    """`GET /v1/models`."""

    models: list[ModelSummary] = Field(description="Every served model.")
    styles: dict[str, str] = Field(description="Style -> the model it routes to.")
    default_style: str | None = Field(description="Style of a request that names none.")
    limits: LimitsConfig = Field(description="What a single request may ask for.")


class DeploymentStatus(Answer):
    name: str = Field(description="Serve deployment name.")
    model: str | None = Field(description="Model it serves (None: not a model server).")
    status: str = Field(description="Serve's deployment status (HEALTHY, UPDATING, ...).")
    replicas_running: int
    replicas_target: int | None
    in_flight: int | None = Field(description="Requests this ingress has in flight to it.")


class ClusterStatus(Answer):
    """`GET /v1/status`."""

    application: str
    status: str = Field(description="Serve's application status (RUNNING, NOT_STARTED, ...).")
    deployments: list[DeploymentStatus]


class TileProgress(Answer):
    done: int
    total: int


class RenderResult(Answer):
    key: str = Field(description="Store key of the image.")
    url: str = Field(description="Signed, expiring link to the image.")
    seam_score: float | None = None
    metrics: dict[str, JsonValue] = Field(default_factory=dict)
    timings: dict[str, JsonValue] = Field(default_factory=dict)


class ArtifactLink(Answer):
    key: str = Field(description="Store key.")
    url: str = Field(description="Signed, expiring link.")


class RenderView(Answer):
    """A render (or a large render job): status, progress and, when done, the result."""

    id: str
    status: str = Field(description="queued, running, done, failed, cancelled, ...")
    progress: TileProgress = Field(description="Tiles done out of total.")
    phase: str
    model: str
    seed: int | None
    width: JsonValue = Field(description="Output width in pixels.")
    height: JsonValue = Field(description="Output height in pixels.")
    format: JsonValue = Field(description="Image format (png, jpeg, webp, tiff).")
    hires_upscaler: str | None = Field(
        None, description="Hires renders: what upscaled the base ('lanczos' or a model)."
    )
    job: str | None = Field(None, description="Path of its job, when it is one.")
    result: RenderResult | None = Field(None, description="Present once done.")
    review: ArtifactLink | None = Field(None, description="Review image (text boxes marked).")
    typography: dict[str, JsonValue] | None = None
    error: str | None = Field(None, description="Why it failed (no paths or tracebacks).")


RenderAnswer = RenderResponse | RenderView


class JobView(Answer):
    """A durable job, its lease and request internals left out."""

    id: str
    kind: JobKind
    owner: str | None = Field(None, description="Tenant of the key that made it.")
    app: str = Field(description="Serve application whose supervisor runs it.")
    model: str | None = None
    status: JobStatus
    progress: Progress
    result: dict[str, JsonValue] | None = None
    error: JobError | None = None
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    idempotency_key: str | None = None
    callback_url: str | None = None
    deliveries: list[Delivery] = Field(default_factory=list)
    location: str = Field(description="Path of this job.")


class JobList(Answer):
    """`GET /v1/jobs`."""

    jobs: list[JobView] = Field(description="Jobs newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class CampaignSubmitted(Answer):
    """`POST /v1/campaigns`: the campaign's numbers and where to follow it."""

    campaign: str
    state: CampaignState
    total: int
    done: int
    status_url: str
    job_id: str
    job_url: str


class CampaignLinks(Answer):
    status_url: str
    report_url: str | None = Field(None, description="Signed link to report.html (once finished).")
    csv_url: str | None = Field(None, description="Signed link to summary.csv (once finished).")


class RunnerView(Answer):
    """What the campaign runner did (see `core.campaign.loop.RunnerStats`)."""

    bound: int
    bound_max: int
    max_in_flight_observed: int
    rendered: int
    skipped: int
    recovered: int
    gave_up: int
    for_review: int
    failed_attempts: int
    overloaded_retries: int
    elapsed_s: float
    report: str | None
    summary_csv: str | None


class CampaignView(CampaignLinks):
    """`GET /v1/campaigns/{name}`: progress, rate, ETA, runner numbers, the report's links."""

    campaign: str
    state: CampaignState
    total: int
    done: int
    failed: int
    in_flight: int
    pending: int
    renders_per_minute: float | None
    eta_s: float | None
    started_at: datetime
    updated_at: datetime
    runner: RunnerView | None


class CampaignReport(CampaignLinks):
    """`POST /v1/campaigns/{name}/report`."""

    campaign: str


class PipelineSummary(Answer):
    name: str
    description: str
    stages: list[StageConfig]


class PipelineList(Answer):
    """`GET /v1/pipelines`."""

    pipelines: list[PipelineSummary]


class StageView(Answer):
    """One stage of a pipeline run; the record's fields once the stage ran."""

    name: str
    status: str = Field(description="pending, running, skipped, or its record's status.")
    approval: str = Field(description="required: the run waits for approval after it; none.")
    run_id: str | None = None
    cache: str | None = Field(None, description="hit or miss in the stage cache.")
    model: str | None = None
    params: dict[str, JsonValue] | None = None
    seed: int | None = None
    timings: dict[str, JsonValue] | None = None
    metrics: dict[str, JsonValue] | None = None
    error: str | None = None
    key: str | None = Field(None, description="Store key of the stage's image.")
    url: str | None = Field(None, description="Signed link to the stage's image.")
    review_key: str | None = None
    review_url: str | None = None
    typography: dict[str, JsonValue] | None = None


class PipelineRunView(Answer):
    """A pipeline run with every stage's status, cache hit or miss and artifact URL."""

    id: str
    pipeline: str | None
    status: str
    prompt: str
    negative_prompt: str
    seed: int | None
    campaign: str | None
    parent_id: str | None
    rerun_from: str | None
    overrides: dict[str, JsonValue]
    created_at: str = Field(description="ISO 8601 time the run was made.")
    timings: dict[str, JsonValue]
    metrics: dict[str, JsonValue]
    error: str | None
    stages: list[StageView]
    result: ArtifactLink | None = Field(None, description="The final image, once done.")
