"""The logic behind `/v1/renders` and `/v1/upscale`: render, admit jobs, show them.

Every render goes through `actors.render_calls.RenderCalls` (the one path the
pipelines and campaigns use too). A one-call render runs here; a large render or
an upscale is admitted as a durable job (`serve.jobs.JobDesk`) that the job
supervisor runs. Views read the store only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.render_calls import (
    ModelCalls,
    ModelRender,
    RenderCalls,
    ServeTarget,
    default_output_key,
)
from core.config import APP_NAME, ClusterConfig
from core.errors import NotFoundError
from core.jobs.model import Job
from core.jobs.requests import stash
from core.records import RunRecord, RunRegistry, new_run_id
from core.redact import public_message
from core.render_records import RecordLabels, upscale_record
from core.schemas import RenderRequestBody, UpscaleRequestBody
from core.store import ArtifactStore
from core.tenants import current_tenant, visible
from core.usage import PixelLedger
from core.validation import resolve_upscale
from serve.capacity import Capacity
from serve.gate import current_caller
from serve.jobs import JobDesk
from serve.links import LinkSigner

# Admission answers from Serve's status up to this much past its 2 s cache while a
# background read refreshes it (a model whose replicas went away is refused a little
# later; its job would have waited in the store anyway).
CAPACITY_STALE_S = 30.0


class RenderService:
    """Runs renders for the ingress."""

    def __init__(
        self,
        config: ClusterConfig,
        store: ArtifactStore,
        model_render: ModelRender | None = None,
        app_name: str = APP_NAME,
    ):
        self.config = config
        self.store = store
        self.registry = RunRegistry(store)
        target = ServeTarget(config.storage, app_name)
        self.calls = RenderCalls(config, self.registry, ModelCalls(target, model_render))
        capacity = Capacity(config, app_name, stale_s=CAPACITY_STALE_S)
        self.jobs = JobDesk(config, self.registry, capacity, app_name)
        self.links = LinkSigner(config.auth, store)
        self.pixels = PixelLedger(store)

    async def charge(self, width: int, height: int) -> None:
        """Count an output's pixels against the caller's `max_pixels_per_day` (429 past it)."""
        caller = current_caller.get()
        if caller is None:
            return
        limit = caller.limits.max_pixels_per_day
        await asyncio.to_thread(self.pixels.spend, caller.tenant, width * height, limit)

    def _size(self, body: RenderRequestBody) -> tuple[int, int]:
        try:
            native = self.config.models[self.config.resolve_model(body.model, body.style)]
            side = native.native_resolution
        except KeyError:
            side = 512
        return body.width or side, body.height or side

    def is_large(self, body: RenderRequestBody) -> bool:
        return self.calls.is_large(body)

    async def render_single(
        self,
        body: RenderRequestBody,
        fmt: str | None = None,
        run_id: str | None = None,
        labels: RecordLabels | None = None,
    ) -> tuple[RunRecord, bytes, str]:
        """Render one image; return its record, encoded bytes and format (`labels`: extra
        params for its record, such as an OpenAI client's `user`).

        A model that has no replica and cannot get one is refused at once (503 naming
        why), never left to wait.
        """
        try:
            model_name = self.config.resolve_model(body.model, body.style)
        except KeyError:  # validation names the unknown model or style
            model_name = None
        if model_name is not None:
            await self.jobs.check_placement(model_name)
        await self.charge(*self._size(body))
        outcome = await self.calls.render_single(
            body, run_id or new_run_id(), labels=labels, fmt=fmt
        )
        assert outcome.encoded is not None
        return outcome.record, outcome.encoded, str(outcome.record.params["format"])

    async def render_several(
        self, bodies: list[RenderRequestBody], labels: RecordLabels | None = None
    ) -> list[tuple[RunRecord, bytes, str]]:
        """`render_single` of every body at once (the model batches them), in order; every
        render ends and writes its record before the first failure is raised."""
        outcomes = await asyncio.gather(
            *(self.render_single(body, labels=labels) for body in bodies), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes  # type: ignore[return-value]

    async def start_large(self, body: RenderRequestBody, idempotency: tuple | None = None) -> Job:
        """Validate a large-format render and queue it as a job; its job."""
        run_id = new_run_id()
        spec, record = await asyncio.to_thread(self.calls.large_job, body, run_id)
        await self.charge(*self._size(body))
        fixed = body.model_dump(mode="json", exclude={"wait", "callback_url"})
        fixed["seed"] = spec.seed  # a resumed job renders the seed chosen now
        request = await asyncio.to_thread(stash, self.store, run_id, fixed, ("base_image",))
        request["output_key"] = spec.output_key
        queued = record.model_copy(update={"status": "queued"})
        callback = None if body.callback_url is None else str(body.callback_url)
        return await self.jobs.admit(
            "hires", run_id, spec.model_name, request, queued, callback, idempotency
        )

    async def start_upscale(
        self, body: UpscaleRequestBody, idempotency: tuple | None = None
    ) -> Job:
        """Validate an upscale and queue it as a job; its job."""
        run_id = new_run_id()
        key = default_output_key(run_id, body.format)
        spec, model = await asyncio.to_thread(resolve_upscale, body, self.config, run_id, key)
        fixed = body.model_dump(mode="json", exclude={"wait", "callback_url"})
        request = await asyncio.to_thread(stash, self.store, run_id, fixed, ("image",))
        request["output_key"] = key
        record = upscale_record(spec, model, status="queued")
        await self.charge(
            int(record.params.get("width") or 0), int(record.params.get("height") or 0)
        )
        callback = None if body.callback_url is None else str(body.callback_url)
        return await self.jobs.admit(
            "upscale", run_id, spec.model_name, request, record, callback, idempotency
        )

    async def job_view(self, run_id: str, base_url: str) -> dict[str, Any]:
        """`GET /v1/renders/{id}`: status, progress and, when done, the result.

        The job is read before the record: a job settles only after its record is
        saved, so a settled job's record is already final (the other order can show
        a job "done" beside a record still "running", without its result).
        """
        job = await self.jobs.find(run_id)
        record = await self.visible_record(run_id)
        return self.view(record, job, base_url)

    async def visible_record(self, run_id: str) -> RunRecord:
        """The run's record when the caller's tenant owns it (another tenant's: 404)."""
        record = await asyncio.to_thread(self.registry.get, run_id)
        if not visible(record.owner, current_tenant.get()):
            raise NotFoundError("id", f"no run {run_id!r}")
        return record

    def view(self, record: RunRecord, job: Job | None, base_url: str) -> dict[str, Any]:
        """The public JSON of a render record (and of its job, when it is one)."""
        status = job.status if job is not None else record.status
        if job is not None:
            progress = job.progress
            done, total, phase = progress.done, progress.total, progress.phase
        else:
            total = int(record.metrics.get("tiles", 0))
            done, phase = (total if status == "done" else 0), status
        view: dict[str, Any] = {
            "id": record.id,
            "status": status,
            "progress": {"done": done, "total": total},
            "phase": phase,
            "model": record.model,
            "seed": record.seed,
            "width": record.params.get("width"),
            "height": record.params.get("height"),
            "format": record.params.get("format"),
        }
        if "hires_upscaler" in record.params:  # what upscaled a hires render's base
            view["hires_upscaler"] = record.params["hires_upscaler"]
        if job is not None:
            view["job"] = f"/v1/jobs/{job.id}"
        if record.status == "done":
            key = record.outputs["image"]
            view["result"] = {
                "key": key,
                "url": self.links.url(key, base_url),
                "seam_score": record.metrics.get("seam_score"),
                "metrics": record.metrics,
                "timings": record.timings,
            }
        if "review_image" in record.outputs:
            key = record.outputs["review_image"]
            view["review"] = {"key": key, "url": self.links.url(key, base_url)}
        if record.typography is not None:
            view["typography"] = record.typography
        error = job.error.message if job is not None and job.error else record.error
        if error:
            view["error"] = public_message(error)
        return view
