"""The logic behind `/v1/renders`: validate, dispatch, store, record.

Single renders go straight to a model replica; large-format ones become jobs
on a tile router. Every render stores its image and a run record.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from core.config import APP_NAME, ClusterConfig
from core.errors import TypographyGateFailed
from core.imaging import EXTENSIONS, encode_image
from core.records import RunRecord, RunRegistry, model_fields, new_run_id, with_typography
from core.schemas import GenerateRequest, RenderRequestBody, UpscaleRequestBody
from core.store import ArtifactStore
from core.typography.delivery import Img2Img, deliver_text, inpaint_pass
from core.validation import (
    ResolvedRender,
    is_large,
    max_call_pixels,
    resolve_large,
    resolve_render,
    resolve_upscale,
)
from serve.dispatch import Dispatcher
from serve.jobs import JobTracker


def output_key(run_id: str, fmt: str) -> str:
    """Store key of a render's image."""
    return f"renders/{run_id}/image.{EXTENSIONS[fmt]}"


class RenderService:
    """Runs renders for the ingress."""

    def __init__(
        self,
        config: ClusterConfig,
        store: ArtifactStore,
        dispatcher: Dispatcher,
        app_name: str = APP_NAME,
    ):
        self.config = config
        self.store = store
        self.registry = RunRegistry(store)
        self.dispatcher = dispatcher
        self.jobs = JobTracker(app_name, config, self.registry)

    def is_large(self, body: RenderRequestBody) -> bool:
        return is_large(body, self.config)

    async def render_single(
        self, body: RenderRequestBody, fmt: str | None = None
    ) -> tuple[RunRecord, bytes, str]:
        """Render one image; return its record, encoded bytes and format."""
        started = time.perf_counter()
        resolved = resolve_render(body, self.config)
        result = await self.dispatcher.render(resolved.model_name, resolved.request)
        request = resolved.request
        image, report = result.image, None
        if resolved.text is not None:
            image = np.array(result.image, copy=True)
            report = await deliver_text(image, resolved.text, self._integrating(resolved))
        fmt = fmt or resolved.format
        encoded = encode_image(image, fmt, dpi=body.dpi)
        run_id = new_run_id()
        key = self.store.put_bytes(output_key(run_id, fmt), encoded)
        total = time.perf_counter() - started
        inputs = {}
        for name, array in (("init_image", request.init_image), ("mask", request.mask)):
            if array is not None:
                inputs[name] = _sha256(array.tobytes())
        record = RunRecord(
            id=run_id,
            kind="render",
            status="done",
            **model_fields(resolved.model_name, resolved.model),
            style=body.style,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=request.seed,
            params={
                "mode": request.mode,
                "width": request.width,
                "height": request.height,
                "steps": request.steps,
                "guidance": request.guidance,
                "strength": request.strength,
                "format": fmt,
                "dpi": body.dpi,
                **_text_params(body),
            },
            inputs=inputs,
            timings={
                "total_s": round(total, 4),
                "compute_s": round(result.compute_s, 4),
                "queue_and_transfer_s": round(max(total - result.compute_s, 0.0), 4),
            },
            metrics={"batch_size": result.batch_size},
            outputs={"image": key},
        )
        if report is not None:
            record = with_typography(record, report)
        self.registry.save(record)
        if report is not None and not report.passed:
            raise TypographyGateFailed(report.message(), run_id, key, record.typography)
        return record, encoded, fmt

    def _integrating(self, resolved: ResolvedRender) -> Img2Img:
        """The integrated pass of a single render's boxes: its model, prompt and seed."""
        model_name, model = resolved.model_name, resolved.model

        async def render(request: GenerateRequest) -> np.ndarray:
            return (await self.dispatcher.render(model_name, request)).image

        return inpaint_pass(render, resolved.request, model.latent_factor, max_call_pixels(model))

    def start_large(self, body: RenderRequestBody) -> RunRecord:
        """Validate and start a large-format job; return its running record."""
        run_id = new_run_id()
        job, model = resolve_large(body, self.config, run_id, output_key(run_id, body.format))
        record = RunRecord(
            id=job.job_id,
            kind="hires",
            status="running",
            **model_fields(job.model_name, model),
            style=body.style,
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            seed=job.seed,
            params={
                "width": job.width,
                "height": job.height,
                "steps": job.steps,
                "guidance": job.guidance,
                "strength": job.strength,
                "mode": job.mode,
                "tile_size": job.tile_size,
                "overlap": job.overlap,
                "format": job.format,
                "dpi": job.dpi,
                "blend": job.blend,
                "colour_match": job.colour_match,
                **_text_params(body),
            },
        )
        return self.jobs.start(record, job)

    def start_upscale(self, body: UpscaleRequestBody) -> RunRecord:
        """Validate and start a tiled upscale job; return its running record."""
        run_id = new_run_id()
        job, model = resolve_upscale(body, self.config, run_id, output_key(run_id, body.format))
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
            inputs={"image": _sha256(job.image.tobytes())},
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


def _text_params(body: RenderRequestBody) -> dict[str, Any]:
    """The request's text boxes, as the record's params keep them."""
    if not body.text_boxes:
        return {}
    return {"text_boxes": [box.model_dump(mode="json") for box in body.text_boxes]}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
