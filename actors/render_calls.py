"""One path for every render call: the API, pipeline stages and campaign items use it.

- `ModelCalls.call_model`: one model call through the model's Serve handle,
  its failures mapped by `actors.serve_calls` (a full queue is `OverloadedError`).
- `ModelCalls.run_large`: a large-format or upscale job on a `TileRouter` actor
  of its own, killed when the job ends however it ends.
- `RenderCalls.render`: a `RenderRequestBody` rendered to a stored result,
  single or large by the one rule (`core.validation.is_large`), its text boxes
  delivered (integrated boxes through the same model), its run record built by
  `core.render_records` and written; a typography gate failure keeps the image
  for review and raises `TypographyGateFailed`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors.serve_calls import ServeModelCalls
from actors.tile_router import TileRouter
from core import telemetry
from core.config import APP_NAME, ClusterConfig, StorageConfig
from core.errors import TypographyGateFailed
from core.image_metadata import ImageMetadata
from core.imaging import EXTENSIONS, encode_image
from core.png_text import store_utf8_tags
from core.record_metadata import record_metadata
from core.records import RunRecord, RunRegistry
from core.remote.record import provider_fields
from core.render_metadata import render_metadata
from core.render_records import (
    RecordLabels,
    finished_large_record,
    large_record,
    single_record,
    with_report,
)
from core.schemas import (
    GenerateRequest,
    GenerateResult,
    LargeRenderJob,
    LargeRenderResult,
    RenderRequestBody,
    UpscaleJob,
)
from core.typography.delivery import Img2Img, deliver_text, inpaint_pass
from core.validation import ResolvedRender, is_large, max_call_pixels, resolve_large, resolve_render

__all__ = [
    "ModelCalls",
    "ModelRender",
    "RenderCalls",
    "RenderOutcome",
    "SPOOL_DIR_ENV",
    "ServeTarget",
    "default_output_key",
    "default_spool_dir",
    "gate_failure",
]


def default_output_key(run_id: str, fmt: str) -> str:
    """Store key of a render's image when its caller names none."""
    return f"renders/{run_id}/image.{EXTENSIONS[fmt]}"


SPOOL_DIR_ENV = "RENDER_CLUSTER_SPOOL_DIR"
"""Names the directory large jobs spool into (the Helm chart points it at its spool volume)."""


def default_spool_dir() -> Path:
    """Where routers spool the files of large jobs: $RENDER_CLUSTER_SPOOL_DIR, else a
    directory under the system's temporary directory."""
    configured = os.environ.get(SPOOL_DIR_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "render-cluster-spool"


@dataclass
class RenderOutcome:
    """A stored render: its record and, for one-call renders, the encoded file."""

    record: RunRecord
    encoded: bytes | None = None


ModelRender = Callable[[str, GenerateRequest], Awaitable[GenerateResult]]
"""Render one request on a replica of the named model."""


@dataclass(frozen=True)
class ServeTarget:
    """The Serve application renders go to, and the store its routers write into.

    `storage` must name the store with an absolute path (routers open it).
    """

    storage: StorageConfig
    app_name: str = APP_NAME
    spool_dir: Path = field(default_factory=default_spool_dir)


class ModelCalls:
    """Model calls and router jobs on one Serve application."""

    def __init__(self, target: ServeTarget, model_render: ModelRender | None = None):
        """`model_render` replaces the Serve handle calls (the ingress counts its calls in
        flight; tests pass a fake model)."""
        self.target = target
        self._model_render = model_render or ServeModelCalls(target.app_name).render

    async def call_model(self, model_name: str, request: GenerateRequest) -> GenerateResult:
        """One render on a replica of `model_name`; `OverloadedError` when its queue is full."""
        return await self._model_render(model_name, request)

    def start_router(self, name: str | None = None, namespace: str | None = None) -> Any:
        """A new `TileRouter` actor for one job (named, to answer progress, when `name`)."""
        options = {} if name is None else {"name": name, "namespace": namespace}
        target = self.target
        return TileRouter.options(**options).remote(
            target.app_name, target.storage.model_dump(mode="json"), str(target.spool_dir)
        )

    async def run_large(
        self, job: LargeRenderJob | UpscaleJob, router: Any = None
    ) -> LargeRenderResult:
        """Run `job` on `router` (default: a new one); the router is killed at the end."""
        router = router if router is not None else self.start_router()
        call = router.upscale if isinstance(job, UpscaleJob) else router.run
        try:
            return await call.remote(job)
        finally:
            ray.kill(router, no_restart=True)


class RenderCalls:
    """Renders requests to stored results, with records, on one Serve application."""

    def __init__(self, config: ClusterConfig, registry: RunRegistry, models: ModelCalls):
        self.config = config
        self.registry = registry
        self.store = registry.store
        self.models = models

    # -- a render request to a stored result --------------------------------------------

    def is_large(self, body: RenderRequestBody) -> bool:
        """Whether `body` renders through the tile router (the one rule for every caller)."""
        return is_large(body, self.config)

    async def render(
        self,
        body: RenderRequestBody,
        run_id: str,
        output_key: str | None = None,
        labels: RecordLabels | None = None,
    ) -> RenderOutcome:
        """Render `body` to the store under `output_key` (default: by run id), record written."""
        labels = labels or RecordLabels()
        if self.is_large(body):
            job, record = self.large_job(body, run_id, output_key, labels)
            await asyncio.to_thread(self.registry.save, record)
            return RenderOutcome(await self.finish_large(record, job))
        return await self.render_single(body, run_id, output_key, labels)

    async def render_single(
        self,
        body: RenderRequestBody,
        run_id: str,
        output_key: str | None = None,
        labels: RecordLabels | None = None,
        fmt: str | None = None,
    ) -> RenderOutcome:
        """One model call, text delivered, image stored and record written (`fmt`: encoding)."""
        started = time.perf_counter()
        resolved = await asyncio.to_thread(resolve_render, body, self.config)
        if fmt is not None:
            resolved.format = fmt
        result = await self.models.call_model(resolved.model_name, resolved.request)
        image, report, extra_calls = result.image, None, []
        if resolved.text is not None:
            image = np.array(result.image, copy=True)
            integrating = self._integrating(resolved, extra_calls)
            report = await deliver_text(image, resolved.text, integrating)
        tags = render_metadata(run_id, resolved, body, labels)  # the file leads to its record
        key = output_key or default_output_key(run_id, resolved.format)
        encoded = await asyncio.to_thread(
            self._store_image, key, image, resolved.format, body, tags
        )
        total = time.perf_counter() - started
        record = single_record(
            run_id,
            resolved,
            body,
            labels or RecordLabels(),
            timings={
                "total_s": round(total, 4),
                "compute_s": round(result.compute_s, 4),
                "queue_and_transfer_s": round(max(total - result.compute_s, 0.0), 4),
            },
            metrics={"batch_size": result.batch_size},
            outputs={"image": key},
            **provider_fields(result.provider, extra_calls),
        )
        return RenderOutcome(await self._save_gated(with_report(record, report)), encoded)

    def large_job(
        self,
        body: RenderRequestBody,
        run_id: str,
        output_key: str | None = None,
        labels: RecordLabels | None = None,
    ) -> tuple[LargeRenderJob, RunRecord]:
        """Validate a large render into its job and its running record (not yet saved)."""
        key = output_key or default_output_key(run_id, body.format)
        job, model = resolve_large(body, self.config, run_id, key)
        return job, large_record(job, model, body, labels or RecordLabels())

    async def finish_large(
        self,
        record: RunRecord,
        job: LargeRenderJob | UpscaleJob,
        router: Any = None,
    ) -> RunRecord:
        """Run a large job to its final record (written); a failed gate raises for review.

        The file carries the record's run id and parameters."""
        scheduler = self.config.models[job.model_name].scheduler
        metadata = record_metadata(record, scheduler)
        result = await self.models.run_large(dataclasses.replace(job, metadata=metadata), router)
        if result.format == "png":  # libvips wrote its text as Latin-1 tEXt
            await asyncio.to_thread(store_utf8_tags, self.store, result.output_key, metadata)
        return await self._save_gated(finished_large_record(record, result))

    def _store_image(
        self, key: str, image: np.ndarray, fmt: str, body: RenderRequestBody, tags: ImageMetadata
    ) -> bytes:
        """Encode a one-call render's image and write it under `key`; its encoded bytes."""
        encoded = encode_image(image, fmt, dpi=body.dpi, metadata=tags)
        self.store.put_bytes(key, encoded)
        return encoded

    async def _save_gated(self, record: RunRecord) -> RunRecord:
        """Write the record (off the event loop); `TypographyGateFailed` if its text failed
        (image kept for review)."""
        await asyncio.to_thread(self.registry.save, record)
        telemetry.count_ended_render(record)
        failed = gate_failure(record)
        if failed is not None:
            raise failed
        return record

    def _integrating(self, resolved: ResolvedRender, hosted_calls: list[dict]) -> Img2Img:
        """The integrated pass of a one-call render's boxes: its model, prompt and seed (a
        hosted model's calls are added to `hosted_calls`, to be paid for in the record)."""
        model_name, model = resolved.model_name, resolved.model

        async def render(request: GenerateRequest) -> np.ndarray:
            result = await self.models.call_model(model_name, request)
            if result.provider is not None:
                hosted_calls.append(result.provider)
            return result.image

        return inpaint_pass(render, resolved.request, model.latent_factor, max_call_pixels(model))


def gate_failure(record: RunRecord) -> TypographyGateFailed | None:
    """The error of a record whose text failed the typography gate, else None."""
    if record.typography is None or record.status != "failed":
        return None
    review = record.outputs.get("review_image")
    return TypographyGateFailed(str(record.error), record.id, review, record.typography)
