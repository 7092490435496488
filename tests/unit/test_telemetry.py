"""The application's metrics without Ray: names, kinds and tags, what is counted where."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core import telemetry
from core.records import RunRecord
from serve.metrics_endpoint import own_metrics


class Recorder:
    """A backend that keeps what was recorded."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float, dict[str, str]]] = []

    def record(self, name, metric, value, tags) -> None:
        self.seen.append((name, value, tags))

    def last_gauge(self, model: str) -> float | None:
        values = [
            v for n, v, t in self.seen if n == "rendercluster_queue_depth" and t["model"] == model
        ]
        return values[-1] if values else None

    def total(self, name: str, **tags: str) -> float:
        return sum(v for n, v, t in self.seen if n == name and tags.items() <= t.items())


@pytest.fixture
def recorder():
    recorder = Recorder()
    telemetry.use_backend(recorder)
    yield recorder
    telemetry.use_backend(None)


def test_every_name_starts_with_rendercluster_and_misuse_is_refused(recorder):
    assert all(name.startswith("rendercluster_") for name in telemetry.METRICS)
    with pytest.raises(ValueError, match="is a counter"):
        telemetry.observe("rendercluster_renders_total", 1, model="m", kind="k", status="s")
    with pytest.raises(ValueError, match="tagged"):
        telemetry.count("rendercluster_tiles_total", 1, route="x")
    telemetry.count("rendercluster_tiles_total", 3, model="quality")
    assert recorder.seen == [("rendercluster_tiles_total", 3, {"model": "quality"})]


def test_an_ended_render_counts_by_model_kind_status_and_its_failed_checks(recorder):
    check = {"name": "contrast", "passed": False}
    typography = {
        "passed": False,
        "boxes": [{"gate": {"checks": [check, {"name": "ocr", "passed": True}]}}],
        "stray_text": {"name": "stray_text", "passed": False},
    }
    record = RunRecord(
        kind="render", status="failed", model="quality", model_source="tiny:0",
        typography=typography,
    )  # fmt: skip
    telemetry.count_ended_render(record)
    assert (
        recorder.total(
            "rendercluster_renders_total", model="quality", kind="render", status="failed"
        )
        == 1
    )
    assert recorder.total("rendercluster_gate_failures_total", check="contrast") == 1
    assert recorder.total("rendercluster_gate_failures_total", check="stray_text") == 1
    assert recorder.total("rendercluster_gate_failures_total", check="ocr") == 0


def test_requests_count_by_route_template_and_rejections_apart(recorder, tmp_path, monkeypatch):
    from serve.api_app import api
    from tests.api.inprocess import config_for, install

    install(config_for(tmp_path), monkeypatch)
    client = TestClient(api)
    client.get("/v1/runs/20260101-000000-000000-deadbeef")
    client.get("/no/such/route")
    assert (
        recorder.total("rendercluster_requests_total", route="/v1/runs/{run_id}", status="404") == 1
    )
    assert recorder.total("rendercluster_requests_total", route="unmatched", status="404") == 1

    async def full(model_name: str) -> str:
        return "no replica of it can start"

    renders = api.state.context.renders
    monkeypatch.setattr(renders.jobs.capacity, "placement_problem", full, raising=False)
    body = {"prompt": "x", "width": 1024, "height": 1024, "mode": "hires", "steps": 4}
    assert client.post("/v1/renders", json=body).status_code == 503
    assert (
        recorder.total("rendercluster_rejected_requests_total", status="503", route="/v1/renders")
        == 1
    )


def test_the_endpoint_keeps_the_application_s_metrics_without_ray_s_prefix():
    exposition = "\n".join(
        [
            "# HELP ray_rendercluster_tiles_total Tiles rendered",
            "# TYPE ray_rendercluster_tiles_total counter",
            'ray_rendercluster_tiles_total{model="quality"} 12.0',
            "# HELP ray_serve_num_http_requests Serve's own",
            'ray_serve_num_http_requests{route="/"} 3.0',
        ]
    )
    assert own_metrics(exposition).splitlines() == [
        "# HELP rendercluster_tiles_total Tiles rendered",
        "# TYPE rendercluster_tiles_total counter",
        'rendercluster_tiles_total{model="quality"} 12.0',
    ]


def test_a_zero_count_is_nothing_and_a_failing_backend_fails_nothing(recorder, caplog):
    telemetry.count("rendercluster_tile_retries_total", 0, model="quality")
    assert recorder.seen == []  # Ray's counters refuse 0
    with pytest.raises(ValueError, match="cannot go down"):
        telemetry.count("rendercluster_tile_retries_total", -1, model="quality")

    class Broken:
        def record(self, *args) -> None:
            raise ValueError("value must be >0, got 0")

    telemetry.use_backend(Broken())
    telemetry.count("rendercluster_tiles_total", 1, model="quality")  # logged, not raised
    assert "recording rendercluster_tiles_total failed" in caplog.text
