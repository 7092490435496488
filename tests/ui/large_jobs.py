"""The job supervisor's part for large renders in the browser tests' server, without Ray.

Each queued `hires` job runs on the tile router's own logic (`TileJobRunner`) with a
fake model that draws fine detail from each call's seed, its live preview on, as its
tenant; its progress goes to the job, its record is finished as the real work does,
and a job cancelled in the store is stopped mid-render (``<spool>/<id>.stopped`` says
when). While the file `hold` exists,
calls after the first `RELEASED_ROWS` rows of tiles of a job whose prompt says "held" wait, so a
test sees a render with only its top rows finished (and cancels one that is running).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from core import tenants
from core.jobs.model import Progress
from core.jobs.requests import restore
from core.largeformat.runner import TileJobRunner
from core.largeformat.tiling import plan_tiles
from core.record_metadata import record_metadata
from core.render_records import RecordLabels, finished_large_record
from core.schemas import GenerateRequest, GenerateResult, RenderRequestBody
from serve.render_service import RenderService

RELEASED_ROWS = 2  # rows of tiles a held render finishes
POLL_S = 0.2


def detail(width: int, height: int, seed: int) -> np.ndarray:
    """A picture with detail down to the pixel (2 px stripes on a shaded tint, which a
    coarser level cannot show), a pure function of its seed."""
    rng = np.random.default_rng(seed % 2**32)
    tint = rng.integers(40, 170, 3).astype(np.int16)
    shade = (np.arange(height) * 24 // max(height, 1)).astype(np.int16)[:, None, None]
    stripes = ((np.arange(width) // 2) % 2 * 60).astype(np.int16)[None, :, None]
    return np.broadcast_to(tint + shade + stripes, (height, width, 3)).clip(0, 255).astype(np.uint8)


class FakeTileModel:
    """The model's replicas: txt2img (and img2img) calls answered with `detail`."""

    def __init__(self, released: int | None, hold: Path):
        """`released`: how many calls go through while `hold` exists (None: all)."""
        self.released, self.hold, self.calls = released, hold, 0

    async def __call__(self, request: GenerateRequest) -> GenerateResult:
        self.calls += 1
        if self.released is not None and self.calls > self.released:
            while self.hold.exists():
                await asyncio.sleep(POLL_S)
        image = detail(request.width, request.height, request.seed)
        return GenerateResult(image, request.seed, 0.001, 1, "fake-replica", ["0"], time.time())


class LargeJobs:
    """Runs the store's queued large renders (see the module)."""

    def __init__(self, renders: RenderService, spool: Path, hold: Path):
        self.renders, self.spool, self.hold = renders, spool, hold
        self.tasks: dict[str, asyncio.Task] = {}
        self.lock = threading.Lock()  # one writer of a running job at a time, as in a cluster

    def guard(self, supervisor: Any) -> None:
        """Make the fake supervisor's cancel wait for this one's job writes (and the other
        way round): a progress update never writes over a cancel."""
        cancel = supervisor.cancel.remote

        async def locked(*args: Any) -> Any:
            with self.lock:
                return await cancel(*args)

        supervisor.cancel.remote = locked

    def _update(self, job_id: str, **changes: Any) -> None:
        """Move a job that has not ended (one that has is left alone)."""
        jobs = self.renders.jobs.jobs
        with self.lock:
            job = jobs.get(job_id)
            if not job.terminal:
                jobs.save(job.moved(**changes))

    def run_forever(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        jobs = self.renders.jobs.jobs
        while True:
            for job in await asyncio.to_thread(jobs.unfinished):
                if job.kind == "hires" and job.status == "queued" and job.id not in self.tasks:
                    self.tasks[job.id] = asyncio.create_task(self._run(job.id))
            for job_id, task in list(self.tasks.items()):
                job = await asyncio.to_thread(jobs.find, job_id)
                if job is not None and job.status == "cancelled" and not task.done():
                    task.cancel()
            await asyncio.sleep(POLL_S)

    async def _run(self, job_id: str) -> None:
        renders = self.renders
        job = renders.jobs.jobs.get(job_id)
        tenants.current_tenant.set(job.owner)
        body = RenderRequestBody.model_validate(restore(renders.store, job.request))
        output_key = str(job.request["output_key"])
        spec, record = renders.calls.large_job(body, job.id, output_key, RecordLabels())
        running = record.model_copy(update={"status": "running"})
        renders.registry.save(running)
        self._update(job_id, status="running", attempts=job.attempts + 1)
        scheduler = renders.config.models[spec.model_name].scheduler
        spec = dataclasses.replace(
            spec, preview=True, owner=job.owner, metadata=record_metadata(running, scheduler)
        )
        runner = TileJobRunner(renders.store, self.spool)
        plan = plan_tiles(spec.width, spec.height, spec.tile_size, spec.overlap, spec.align)
        held = RELEASED_ROWS * plan.cols if "held" in body.prompt else None
        model = FakeTileModel(held, self.hold)
        follow = asyncio.create_task(self._follow(job_id, runner))
        try:
            result = await runner.render(spec, model)
        except asyncio.CancelledError:
            renders.registry.save(running.model_copy(update={"status": "cancelled"}))
            self.spool.mkdir(parents=True, exist_ok=True)
            (self.spool / f"{job_id}.stopped").touch()  # for the test: it stopped here
            raise
        finally:
            follow.cancel()
        final = finished_large_record(running, result)
        renders.registry.save(final)
        done = {"run_id": final.id, "image": final.outputs["image"]}
        progress = Progress(done=result.tiles, total=result.tiles, phase="done")
        self._update(job_id, status="done", result=done, progress=progress)

    async def _follow(self, job_id: str, runner: TileJobRunner) -> None:
        with contextlib.suppress(Exception):
            while True:
                now = runner.progress
                progress = Progress(done=now.done, total=now.total, phase=now.phase)
                await asyncio.to_thread(self._update, job_id, progress=progress)
                await asyncio.sleep(POLL_S)
