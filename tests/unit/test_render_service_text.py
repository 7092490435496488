"""`RenderService.render_single` with text boxes, on a fake dispatcher (no Ray started)."""

from __future__ import annotations

import asyncio

import pytest

from core.config import ClusterConfig, StorageConfig
from core.errors import TypographyGateFailed
from core.schemas import GenerateRequest, GenerateResult, RenderRequestBody
from core.store import open_store
from core.typography import tesseract_available
from serve.render_service import RenderService
from tests.unit.typography.scenes import busy

pytestmark = pytest.mark.skipif(
    not tesseract_available(), reason="tesseract missing (Debian: tesseract-ocr)"
)
BOX = {"copy": "SALE ends 31/12", "anchor": {"x": 0.1, "y": 0.6, "w": 0.8, "h": 0.3}}


class SceneDispatcher:
    """Answers every render with a smooth scene; keeps the requests."""

    def __init__(self) -> None:
        self.requests: list[GenerateRequest] = []

    async def render(self, model_name: str, request: GenerateRequest) -> GenerateResult:
        self.requests.append(request)
        image = busy((request.width, request.height), seed=request.seed % 100, scale=24)
        return GenerateResult(image, request.seed, 0.01, 1, "replica-1", ["0"])


def _service(
    tmp_path, dispatcher: SceneDispatcher | None = None, **gate
) -> tuple[RenderService, SceneDispatcher]:
    config = ClusterConfig.model_validate(
        {
            "models": {"quality": {"source": "tiny:0", "native_resolution": 512}},
            "storage": StorageConfig(kind="local", path=tmp_path).model_dump(),
            "typography": {"gate": gate},
        }
    )
    dispatcher = dispatcher or SceneDispatcher()
    return RenderService(config, open_store(config.storage), dispatcher.render), dispatcher


def test_a_passing_render_records_the_gate(tmp_path):
    service, dispatcher = _service(tmp_path)
    body = RenderRequestBody(prompt="a poster", width=512, height=256, seed=2, text_boxes=[BOX])
    record, encoded, fmt = asyncio.run(service.render_single(body))
    assert record.status == "done" and record.typography["passed"]
    assert record.typography["boxes"][0]["gate"]["ocr_text"] == "SALE ends 31/12"
    assert dispatcher.requests[0].negative_prompt.startswith("text, letters")
    assert service.store.get_bytes(record.outputs["image"]) == encoded and fmt == "png"


def test_a_failed_gate_is_a_422_and_the_image_is_kept_for_review(tmp_path):
    service, _ = _service(tmp_path, min_contrast=21)
    body = RenderRequestBody(prompt="a poster", width=512, height=256, seed=2, text_boxes=[BOX])
    with pytest.raises(TypographyGateFailed) as caught:
        asyncio.run(service.render_single(body))
    error = caught.value
    assert error.status_code == 422 and error.field == "text_boxes"
    assert "text_boxes[0] contrast (" in error.message and error.run_id in error.message
    record = service.registry.get(error.run_id)
    assert record.status == "failed" and "image" not in record.outputs
    assert record.outputs["review_image"] == error.review_image
    assert service.store.exists(error.review_image)
    assert record.typography == error.report and record.typography["passed"] is False


class PricedDispatcher(SceneDispatcher):
    """A hosted model: every call costs 0.08 USD."""

    async def render(self, model_name: str, request: GenerateRequest) -> GenerateResult:
        result = await super().render(model_name, request)
        result.provider = {"provider": "ideogram", "provider_model": "V_2", "cost_usd": 0.08}
        return result


def test_an_integrated_box_s_extra_hosted_call_is_paid_for_in_the_record(tmp_path):
    service, priced = _service(tmp_path, PricedDispatcher())
    box = {**BOX, "mode": "integrated"}
    body = RenderRequestBody(prompt="a poster", width=512, height=256, seed=2, text_boxes=[box])
    try:
        record = asyncio.run(service.render_single(body))[0]
    except TypographyGateFailed as failed:  # the scene model paints over the copy: kept
        record = service.registry.get(failed.run_id)
    assert [r.mode for r in priced.requests] == ["txt2img", "inpaint"]
    assert record.cost_usd == 0.16 and record.provider.provider == "ideogram"
