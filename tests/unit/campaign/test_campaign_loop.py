"""The campaign loop with a fake renderer: records, resume, the in-flight bound, retries."""

from __future__ import annotations

import asyncio
import io
import posixpath
import re
from collections import Counter

import pytest
from PIL import Image

from core.campaign import (
    ManifestError,
    RenderJob,
    claim_run_id,
    done_keys,
    layout,
    load_ledger,
    load_status,
    parse_manifest,
)
from core.campaign.loop import CampaignLoop, LoopSettings, RunnerStats, load_stats
from core.campaign.plan import fit_pipeline, job_record, plan_campaign, render_key
from core.config import ClusterConfig
from core.config_file import parse_config
from core.errors import OverloadedError, RequestError, TypographyGateFailed
from core.records import RunRecord, RunRegistry
from core.store import ArtifactStore
from tests.waiting import wait_until_async

CONFIG = """
models:
  quality: {source: "tiny:0", native_resolution: 256}
styles: {photo: quality}
default_style: photo
pipelines:
  gated:
    stages:
      - {name: draft, model: quality, width: 128, height: 64}
      - {name: final, model: quality, width: 256, height: 128, consumes: [previous],
         approval: required}
  two-step:
    stages:
      - {name: draft, model: quality, width: 128, height: 64}
      - {name: hires, kind: hires, model: quality, width: 1024, height: 512,
         consumes: [previous]}
"""
SUBJECTS = ["bicycle", "kite", "teapot", "taxi", "umbrella", "lantern"]
SUBJECTS += ["robot", "retriever", "lighthouse", "cat", "violin", "flamingo"]
MANIFEST = "campaign: spring\ndefaults: {sizes: [1:1, 16:9], steps: 2}\nitems:\n" + "".join(
    f"  - {{id: item-{n:02d}, prompt: a {subject}}}\n" for n, subject in enumerate(SUBJECTS)
)
FAST = LoopSettings(backoff_s=0.001, max_backoff_s=0.01, status_interval_s=0.25)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 80, 40)).save(out, "PNG")
    return out.getvalue()


PNG = _png()


class FakeRenderer:
    """Stores a small PNG per job; counts calls and renders in flight; fails on request."""

    def __init__(
        self,
        store: ArtifactStore,
        config: ClusterConfig,
        *,
        delay_s: float = 0.005,
        overloads: dict[str, int] | None = None,
        failures: dict[str, int] | None = None,
        error: type[Exception] = RuntimeError,
    ):
        """`overloads` / `failures`: item id -> how many calls of each of its jobs fail."""
        self.store = store
        self.config = config
        self.delay_s = delay_s
        self.overloads = overloads or {}
        self.failures = failures or {}
        self.error = error
        self.calls: Counter[str] = Counter()
        self.rendered: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, job: RenderJob, run_id: str) -> RunRecord:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            self.calls[job.key] += 1
            calls = self.calls[job.key]
            overloads = self.overloads.get(job.item_id, 0)
            if calls <= overloads:
                raise OverloadedError(job.model)
            if calls - overloads <= self.failures.get(job.item_id, 0):
                raise self.error("boom", f"{job.item_id} broke")
            key = self.store.put_bytes(render_key(job, "png"), PNG)
            self.rendered.append(job.key)
            return job_record(job, self.config, run_id, outputs={"image": key})
        finally:
            self.in_flight -= 1


@pytest.fixture
def config() -> ClusterConfig:
    return parse_config(CONFIG)


@pytest.fixture
def jobs(config: ClusterConfig) -> list[RenderJob]:
    return plan_campaign(parse_manifest(MANIFEST, "yaml"), config)


def run(loop: CampaignLoop) -> RunnerStats:
    return asyncio.run(loop.run())


def campaign_records(store: ArtifactStore) -> list[RunRecord]:
    return RunRegistry(store).list(campaign="spring", limit=None)


def report_links(store: ArtifactStore, cls: str) -> list[str]:
    """Store keys the report's `a.<cls>` links point to (they are relative to the report)."""
    html = store.get_bytes(layout.report_key("spring")).decode()
    folder = posixpath.dirname(layout.report_key("spring"))
    hrefs = re.findall(rf'<a class="{cls}" href="([^"]+)"', html)
    return [posixpath.normpath(posixpath.join(folder, href)) for href in hrefs]


def test_twelve_items_at_two_sizes_give_24_records_and_a_report_linking_all(store, config, jobs):
    renderer = FakeRenderer(store, config)
    stats = run(CampaignLoop(store, config, jobs, renderer, settings=FAST))

    assert len(jobs) == 24
    assert (stats.state, stats.rendered, stats.skipped, stats.gave_up) == ("finished", 24, 0, 0)
    records = campaign_records(store)
    assert len(records) == 24 and len({r.id for r in records}) == 24
    assert {r.params["job_key"] for r in records} == {job.key for job in jobs}
    assert all(r.status == "done" and r.kind == "campaign-item" for r in records)

    images = report_links(store, "image")
    assert sorted(images) == sorted(render_key(job, "png") for job in jobs)
    assert sorted(report_links(store, "record")) == sorted(
        RunRegistry(store).key(r.id) for r in records
    )
    assert all(store.exists(key) for key in images)
    csv = store.get_bytes(layout.summary_key("spring")).decode().splitlines()
    assert len(csv) == 25
    status = load_status(store, "spring")
    assert (status.state, status.done, status.failed, status.in_flight) == ("finished", 24, 0, 0)
    assert load_stats(store, "spring") == stats


def test_a_killed_runner_started_again_finishes_the_rest_without_duplicates(store, config, jobs):
    first = FakeRenderer(store, config, delay_s=0.02)
    settings = LoopSettings(max_in_flight=3, backoff_s=0.001, status_interval_s=0.25)

    async def kill_after_some() -> None:
        task = asyncio.create_task(
            CampaignLoop(store, config, jobs, first, settings=settings).run()
        )
        await wait_until_async(
            lambda: done_keys(store, "spring"),
            lambda done: len(done) >= 7,
            timeout_s=60,
            interval_s=0.005,
            what="the first runner to finish 7 of the 24 renders",
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(kill_after_some())
    assert load_status(store, "spring").state == "stopped"
    done_before = set(load_ledger(store, "spring").done)
    assert 7 <= len(done_before) < 24

    second = FakeRenderer(store, config)
    stats = run(CampaignLoop(store, config, jobs, second, settings=settings))

    assert stats.state == "finished"
    assert stats.skipped + stats.recovered == len(done_before)
    assert not set(second.rendered) & done_before
    assert len(second.rendered) == 24 - len(done_before)
    records = campaign_records(store)
    assert len(records) == 24 and len({r.id for r in records}) == 24
    assert Counter(r.params["job_key"] for r in records) == Counter(job.key for job in jobs)
    assert all(r.status == "done" for r in records)
    assert len(load_ledger(store, "spring").done) == 24


def test_a_job_recorded_by_a_dead_runner_is_marked_done_not_rendered_again(store, config, jobs):
    job = jobs[5]
    run_id = claim_run_id(store, job)
    key = store.put_bytes(render_key(job, "png"), PNG)
    RunRegistry(store).save(job_record(job, config, run_id, outputs={"image": key}))

    renderer = FakeRenderer(store, config)
    stats = run(CampaignLoop(store, config, jobs, renderer, settings=FAST))

    assert (stats.recovered, stats.rendered) == (1, 23)
    assert job.key not in renderer.calls
    assert len(campaign_records(store)) == 24


@pytest.mark.parametrize(("capacity", "cap", "bound"), [(3, 64, 3), (100, 5, 5)])
def test_renders_in_flight_never_exceed_the_bound(store, config, jobs, capacity, cap, bound):
    renderer = FakeRenderer(store, config, delay_s=0.1)  # long enough to fill every slot

    async def cluster_capacity() -> int:
        return capacity

    settings = LoopSettings(max_in_flight=cap, backoff_s=0.001, status_interval_s=0.25)
    loop = CampaignLoop(store, config, jobs, renderer, capacity=cluster_capacity, settings=settings)
    stats = run(loop)

    assert renderer.max_in_flight == bound  # observed by the renderer, and reached
    assert stats.bound == stats.bound_max == bound
    assert stats.max_in_flight_observed == renderer.max_in_flight
    assert stats.rendered == 24


def test_a_growing_capacity_raises_the_bound_while_it_runs(store, config, jobs):
    renderer = FakeRenderer(store, config, delay_s=0.05)
    answers = iter([1, 2, 4])

    async def cluster_capacity() -> int:
        return next(answers, 4)

    settings = LoopSettings(max_in_flight=8, capacity_interval_s=0.02, status_interval_s=0.25)
    loop = CampaignLoop(store, config, jobs, renderer, capacity=cluster_capacity, settings=settings)
    stats = run(loop)

    assert renderer.max_in_flight <= stats.bound_max == 4
    assert renderer.max_in_flight > 1
    assert stats.max_in_flight_observed == renderer.max_in_flight


def test_503s_are_retried_with_backoff_and_never_counted_as_failures(store, config, jobs):
    overloads = {"item-01": 2, "item-07": 5}
    renderer = FakeRenderer(store, config, overloads=overloads)
    stats = run(CampaignLoop(store, config, jobs, renderer, settings=FAST))

    assert (stats.rendered, stats.gave_up, stats.failed_attempts) == (24, 0, 0)
    assert stats.overloaded_retries == 2 * (2 + 5)  # two sizes per item
    assert load_ledger(store, "spring").failed == {}
    assert load_status(store, "spring").failed == 0


def test_a_failing_item_is_retried_then_reported_and_the_campaign_finishes(store, config, jobs):
    failures = {"item-03": 99, "item-04": 1}  # one always fails, one fails once
    renderer = FakeRenderer(store, config, failures=failures)
    settings = LoopSettings(max_attempts=3, backoff_s=0.001, status_interval_s=0.25)
    stats = run(CampaignLoop(store, config, jobs, renderer, settings=settings))

    assert (stats.state, stats.rendered, stats.gave_up) == ("finished", 22, 2)
    assert stats.failed_attempts == 2 * 3 + 2 * 1
    broken = [job.key for job in jobs if job.item_id == "item-03"]
    assert [renderer.calls[key] for key in broken] == [3, 3]
    failed = load_ledger(store, "spring").failed
    assert set(failed) == set(broken)
    assert all(e.attempts == 3 and "item-03 broke" in e.error for e in failed.values())

    records = campaign_records(store)
    assert len(records) == 24
    assert Counter(r.status for r in records) == {"done": 22, "failed": 2}
    html = store.get_bytes(layout.report_key("spring")).decode()
    assert 'id="failures"' in html and html.count("item-03 broke") >= 2
    assert len(report_links(store, "image")) == 22
    status = load_status(store, "spring")
    assert (status.state, status.done, status.failed) == ("finished", 22, 2)


def test_a_request_error_is_given_up_at_once(store, config, jobs):
    renderer = FakeRenderer(store, config, failures={"item-00": 99}, error=RequestError)
    stats = run(CampaignLoop(store, config, jobs, renderer, settings=FAST))

    assert (stats.gave_up, stats.failed_attempts) == (2, 2)
    assert all(entry.attempts == 1 for entry in load_ledger(store, "spring").failed.values())


class GateFailingRenderer(FakeRenderer):
    """Renders every job, but the copy of item-00's jobs fails the typography gate."""

    async def __call__(self, job: RenderJob, run_id: str) -> RunRecord:
        record = await super().__call__(job, run_id)
        if job.item_id != "item-00":
            return record
        report = {"passed": False, "boxes": [], "stray_text": None}
        message = "typography gate failed: text_boxes[0] ocr (read 'SALE 5O%', expected 'SALE 50%')"
        raise TypographyGateFailed(message, run_id, record.outputs["image"], report)


def test_copy_failing_the_typography_gate_is_kept_for_review_not_delivered(store, config, jobs):
    renderer = GateFailingRenderer(store, config)
    stats = run(CampaignLoop(store, config, jobs, renderer, settings=FAST))

    assert (stats.rendered, stats.for_review, stats.gave_up) == (22, 2, 0)
    ledger = load_ledger(store, "spring")
    reviewed = [job for job in jobs if job.item_id == "item-00"]
    assert {job.key for job in reviewed} == set(ledger.failed) and not (
        set(ledger.failed) & set(ledger.done)
    )
    for job in reviewed:
        entry = ledger.failed[job.key]
        assert entry.attempts == 1 and renderer.calls[job.key] == 1  # never retried
        assert entry.review_image == render_key(job, "png") and "ocr (read" in entry.error
        record = RunRegistry(store).get(entry.run_id)
        assert record.status == "failed" and record.outputs == {"review_image": entry.review_image}
        assert record.typography == {"passed": False, "boxes": [], "stray_text": None}
    rows = store.get_bytes(layout.summary_key("spring")).decode().splitlines()
    review_rows = [row for row in rows if ",review," in row]
    assert len(review_rows) == 2 and all(
        render_key(j, "png") in "".join(review_rows) for j in reviewed
    )
    html = store.get_bytes(layout.report_key("spring")).decode()
    assert html.count('<figure class="review">') == 2 and "<b>2</b> review" in html


def test_what_the_runner_cannot_render_is_refused_before_anything_renders(config):
    manifest = parse_manifest(
        """
campaign: checks
items:
  - {id: small, prompt: a fox, sizes: [64x64, 1:1], copy: Spring sale today only}
  - {id: large, prompt: a hen, sizes: [1024x512], copy: Spring sale}
  - {id: gated, prompt: a cow, pipeline: gated}
""",
        "yaml",
    )
    with pytest.raises(ManifestError) as caught:
        plan_campaign(manifest, config)
    small, gated = caught.value.problems  # large renders take copy too
    assert small.startswith("items[0] at 64x64: copy: does not fit box copy (56x16 px")
    assert gated == (
        "items[2] at 1:1 (256x256): pipeline: 'gated' stops for approval after stage 'final'; "
        "a campaign renders unattended, so use a pipeline without approval gates"
    )


def test_a_pipeline_is_fitted_to_each_size_of_an_item(config):
    wide = fit_pipeline(config, "two-step", 1024, 512)
    assert wide == config.pipelines["two-step"]  # its own size: unchanged
    square = fit_pipeline(config, "two-step", 512, 512)
    assert [(s.width, s.height) for s in square.stages] == [(88, 88), (512, 512)]
    for width, height in ((256, 448), (360, 184), (1024, 256)):
        draft, hires = fit_pipeline(config, "two-step", width, height).stages
        assert (hires.width, hires.height) == (width, height)
        assert draft.width % 8 == draft.height % 8 == 0
        assert abs(draft.width / draft.height / (width / height) - 1) <= 0.01
        assert 0.5 < draft.width * draft.height / (128 * 64) < 5
