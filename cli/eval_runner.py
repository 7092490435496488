"""Run a suite's cases through a cluster's API and measure them (`rendercluster eval`).

Every case is an ordinary request: `POST /v1/renders` (a large one followed as a
job), or `POST /v1/pipelines/{name}/runs` for a pipeline case, whose figures are
reported under the model name ``pipeline:NAME``. The run record of each render
gives what the client cannot see (seam score, the gate's verdict, cost, the
model's source and revision).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cli.client import ClientError, RenderClient
from cli.exit_codes import ExitCode
from core.experiments import metrics
from core.experiments.record import ExperimentRecord, ModelUnderTest, Sample
from core.experiments.scorers import Scorer
from core.experiments.suite import Case, Suite
from core.variance import layout_variance

__all__ = ["Measured", "run_suite"]

POLL_S = 0.25
FOLLOW_DEADLINE_S = 1800.0  # the longest a suite waits for one job
_SAMPLE_FAILURES = (ExitCode.GATE_FAILED, ExitCode.SERVER_ERROR)


@dataclass
class Measured:
    """One sample and its picture (None when the render gave none)."""

    sample: Sample
    image: np.ndarray | None
    record: dict[str, Any] | None


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _render_body(case: Case, model: str, seed: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": case.prompt,
        "model": model,
        "seed": seed,
        "width": case.width,
        "height": case.height,
        "mode": case.mode,
        "steps": case.steps,
        "strength": case.strength,
        "text_boxes": case.text_boxes or None,
        "wait": False,
    }
    for name in ("init_image", "mask"):
        if getattr(case, name) is not None:
            body[name] = base64.b64encode(getattr(case, name).read_bytes()).decode()
    return {key: value for key, value in body.items() if value is not None}


def _follow(client: RenderClient, path: str, view: dict[str, Any]) -> dict[str, Any]:
    """Poll `path` until the job stops; a job still going after the deadline is an error."""
    deadline = time.monotonic() + FOLLOW_DEADLINE_S
    while view["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            message = f"{path} still {view['status']} after {FOLLOW_DEADLINE_S:.0f} s"
            raise ClientError(message, ExitCode.SERVER_ERROR)
        time.sleep(POLL_S)
        view = client.get(path)
    return view


def _render(client: RenderClient, case: Case, model: str, seed: int) -> tuple[str, bytes, bool]:
    """(run id, image bytes, whether it was a large job) of one render."""
    view = client.post("/v1/renders", _render_body(case, model, seed))
    if "image_base64" in view:
        return view["id"], base64.b64decode(view["image_base64"]), False
    view = _follow(client, f"/v1/renders/{view['id']}", view)
    if view["status"] != "done":
        code = ExitCode.GATE_FAILED if "review" in view else ExitCode.SERVER_ERROR
        raise ClientError(f"render {view['id']} {view['status']}: {view.get('error')}", code)
    return view["id"], client.fetch(view["result"]["url"]), True


def _pipeline(client: RenderClient, case: Case, seed: int) -> tuple[str, bytes, bool]:
    """(last stage's run id, final image, False) of one pipeline run."""
    path = f"/v1/pipelines/{case.pipeline}/runs"
    view = client.post(path, {"prompt": case.prompt, "seed": seed, "wait": True})
    view = _follow(client, f"/v1/pipelines/runs/{view['id']}", view)
    if view["status"] != "done" or view.get("result") is None:
        reason = view.get("error") or view["status"]
        raise ClientError(f"pipeline run {view['id']}: {reason}", ExitCode.SERVER_ERROR)
    last = [stage for stage in view["stages"] if stage.get("run_id")][-1]
    return last["run_id"], client.fetch(view["result"]["url"]), False


def _hires_lost(
    client: RenderClient, case: Case, model: str, seed: int, scorer: Scorer, clauses: dict
) -> list[str] | None:
    """The clauses that held on a square hires render's base image (the same prompt and seed
    at the model's native size, as the hires job draws it) but not on the hires render;
    None for other cases."""
    if case.mode != "hires" or case.width != case.height or not clauses:
        return None
    body = {**_render_body(case, model, seed), "mode": "single"}
    for name in ("width", "height", "text_boxes", "wait"):
        body.pop(name, None)
    base = _decode(base64.b64decode(client.post("/v1/renders", body)["image_base64"]))
    held = scorer.score(base, case.prompt).clauses
    return [name for name, holds in held.items() if holds and not clauses.get(name, False)]


def measure(client: RenderClient, case: Case, model: str, seed: int, scorer: Scorer) -> Measured:
    """Render one sample and read its figures; a failed render is a failed sample."""
    label = f"pipeline:{case.pipeline}" if case.pipeline else model
    scored = scorer.applies(case.prompt)
    started = time.perf_counter()
    try:
        if case.pipeline:
            run_id, data, large = _pipeline(client, case, seed)
        else:
            run_id, data, large = _render(client, case, model, seed)
    except ClientError as exc:
        if exc.exit_code not in _SAMPLE_FAILURES:
            raise
        gated = exc.exit_code == ExitCode.GATE_FAILED
        sample = Sample(
            case=case.id,
            model=label,
            seed=seed,
            status="gate_failed" if gated else "failed",
            error=str(exc)[:500],
            latency_s=time.perf_counter() - started,
            adherence=0.0 if scored else None,
            gate_passed=False if gated else None,
        )
        return Measured(sample, None, None)
    latency = time.perf_counter() - started
    image = _decode(data)
    record = client.get(f"/v1/runs/{run_id}")
    adherence = scorer.score(image, case.prompt) if scored else None
    clauses = adherence.clauses if adherence else {}
    lost = _hires_lost(client, case, model, seed, scorer, clauses)
    typography = record.get("typography")
    sample = Sample(
        case=case.id,
        model=label,
        seed=seed,
        status="done",
        run_id=run_id,
        latency_s=latency,
        cost_usd=record.get("cost_usd") or 0.0,
        width=image.shape[1],
        height=image.shape[0],
        large=large,
        adherence=adherence.score if adherence else None,
        clauses=clauses,
        hires_kept=None if lost is None else not lost,
        hires_lost=lost or [],
        gate_passed=typography.get("passed") if typography else None,
        seam_score=record.get("metrics", {}).get("seam_score"),
    )
    return Measured(sample, image, record)


def _variances(measured: list[Measured]) -> dict[tuple[str, str], float]:
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    for item in measured:
        if item.image is not None:
            groups.setdefault((item.sample.case, item.sample.model), []).append(item.image)
    return {
        key: layout_variance(images)
        for key, images in groups.items()
        if len(images) >= 2 and len({image.shape for image in images}) == 1
    }


def _models(names: list[str], measured: list[Measured]) -> list[ModelUnderTest]:
    pinned: dict[str, ModelUnderTest] = {}
    for item in measured:
        record = item.record
        if record is not None and item.sample.model not in pinned:
            pinned[item.sample.model] = ModelUnderTest(
                name=item.sample.model,
                source=record.get("model_source"),
                revision=record.get("model_revision"),
                family=record.get("family"),
            )
    labels = list(dict.fromkeys([*names, *(item.sample.model for item in measured)]))
    return [pinned.get(label, ModelUnderTest(name=label)) for label in labels]


def run_suite(
    client: RenderClient,
    suite: Suite,
    digest: str,
    models: list[str],
    scorer: Scorer,
    progress: Callable[[Sample], None] = lambda sample: None,
) -> tuple[ExperimentRecord, list[Measured]]:
    """Every case x seed x model (a pipeline case once per seed); the experiment record."""
    measured: list[Measured] = []
    for case in suite.cases:
        for model in models[:1] if case.pipeline else models:
            for seed in suite.seeds_of(case):
                measured.append(measure(client, case, model, seed, scorer))
                progress(measured[-1].sample)
    samples = [item.sample for item in measured]
    variances = _variances(measured) if "layout_variance" in suite.metrics else {}
    record = ExperimentRecord(
        suite=suite.name,
        suite_sha256=digest,
        suite_content=suite.model_dump(mode="json"),
        scorer=scorer.name,
        models=_models(models, measured),
        samples=samples,
        cases=metrics.case_results(samples, variances, list(suite.metrics)),
        summary=metrics.summary(samples, variances, list(suite.metrics)),
    )
    return record, measured
