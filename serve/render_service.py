"""The logic behind `/v1/renders` and `/v1/upscale`: start, follow and show renders.

Every render goes through `actors.render_calls.RenderCalls` (the one path the
pipelines and campaigns use too); this service adds what only the API needs:
run ids, jobs followed from the ingress and the public JSON view of a record.
"""

from __future__ import annotations

import hashlib
from typing import Any

from actors.render_calls import (
    ModelCalls,
    ModelRender,
    RenderCalls,
    ServeTarget,
    default_output_key,
)
from core.config import APP_NAME, ClusterConfig
from core.records import RunRecord, RunRegistry, model_fields, new_run_id
from core.schemas import RenderRequestBody, UpscaleRequestBody
from core.store import ArtifactStore
from core.validation import resolve_upscale
from serve.jobs import JobTracker


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
        self.jobs = JobTracker(self.calls)

    def is_large(self, body: RenderRequestBody) -> bool:
        return self.calls.is_large(body)

    async def render_single(
        self, body: RenderRequestBody, fmt: str | None = None
    ) -> tuple[RunRecord, bytes, str]:
        """Render one image; return its record, encoded bytes and format."""
        outcome = await self.calls.render_single(body, new_run_id(), fmt=fmt)
        assert outcome.encoded is not None
        return outcome.record, outcome.encoded, str(outcome.record.params["format"])

    def start_large(self, body: RenderRequestBody) -> RunRecord:
        """Validate and start a large-format job; return its running record."""
        job, record = self.calls.large_job(body, new_run_id())
        return self.jobs.start(record, job)

    def start_upscale(self, body: UpscaleRequestBody) -> RunRecord:
        """Validate and start a tiled upscale job; return its running record."""
        run_id = new_run_id()
        key = default_output_key(run_id, body.format)
        job, model = resolve_upscale(body, self.config, run_id, key)
        height, width = job.image.shape[:2]
        record = RunRecord(
            id=run_id,
            kind="upscale",
            status="running",
            **model_fields(job.model_name, model),
            params={
                "source_width": width,
                "source_height": height,
                "width": width * job.scale,
                "height": height * job.scale,
                "scale": job.scale,
                "passes": job.passes,
                "tile_size": job.tile_size,
                "padding": job.padding,
                "format": job.format,
                "dpi": job.dpi,
            },
            inputs={"image": hashlib.sha256(job.image.tobytes()).hexdigest()},
        )
        return self.jobs.start(record, job)

    async def job_view(self, run_id: str, base_url: str) -> dict[str, Any]:
        """`GET /v1/renders/{id}`: status, progress and, when done, the result."""
        record, progress = await self.jobs.status(run_id)
        return self.view(record, progress, base_url)

    def view(self, record: RunRecord, progress: dict[str, Any], base_url: str) -> dict[str, Any]:
        """The public JSON of a render record."""
        view: dict[str, Any] = {
            "id": record.id,
            "status": record.status,
            "progress": {"done": progress["done"], "total": progress["total"]},
            "phase": progress["phase"],
            "model": record.model,
            "seed": record.seed,
            "width": record.params.get("width"),
            "height": record.params.get("height"),
            "format": record.params.get("format"),
        }
        if record.status == "done":
            key = record.outputs["image"]
            view["result"] = {
                "key": key,
                "url": self.store.url(key, base_url=base_url),
                "seam_score": record.metrics.get("seam_score"),
                "metrics": record.metrics,
                "timings": record.timings,
            }
        if "review_image" in record.outputs:
            key = record.outputs["review_image"]
            view["review"] = {"key": key, "url": self.store.url(key, base_url=base_url)}
        if record.typography is not None:
            view["typography"] = record.typography
        if record.error:
            view["error"] = record.error
        return view
