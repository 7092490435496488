"""The in-process API with the review board, served by uvicorn for the browser tests.

`python -m tests.ui.board_server <store dir> <keys file> <port>` serves the real routes
over the fakes of the Ray pieces (tests.api.inprocess) on 127.0.0.1:<port>, with a
pipeline that stops at an approval gate and a stand-in for the job supervisor that
moves pipeline runs on the way the real one does (`PipelineRunner.advance`, as the
run's tenant), with a deterministic fake stage renderer; large renders run on the tile router's own
logic with a fake model (tests.ui.large_jobs).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import StageJob, StageOutput
from core import tenants
from core.campaign import parse_manifest
from core.campaign.loop import CampaignLoop, LoopSettings
from core.campaign.plan import job_record, plan_campaign, render_key
from core.errors import RequestError
from core.imaging import encode_image
from serve import jobs as serve_jobs
from serve.api_app import api
from tests.api.inprocess import config_for, install
from tests.ui.large_jobs import LargeJobs

STAGE = {"model": "tiny", "width": 96, "height": 64}
PIPELINES = {
    "gated": {
        "stages": [
            {"name": "draft", "approval": "required", **STAGE},
            {"name": "final", "consumes": ["previous"], **STAGE},
        ]
    }
}
POLL_S = 0.2
LIMITS = {"max_width": 8192, "max_height": 8192, "max_pixels": 8192 * 4096}  # billboards
MODELS = {  # "poster": 512 px tiles, so a billboard is tens of tiles, not thousands
    "tiny": {
        "source": "tiny:0",
        "native_resolution": 64,
        "schedulers": ["euler", "ddim"],  # the re-run form offers these and the adapter
        "loras": [{"name": "ink", "source": "/loras/ink.safetensors", "scale": 0.8}],
    },
    "poster": {"source": "tiny:0", "native_resolution": 512},
}


async def fake_stage(job: StageJob) -> StageOutput:
    """Colour bands seeded by the stage's request: other params, other picture."""
    request = job.request
    text = repr((job.stage.name, request.prompt, request.seed, request.steps)).encode()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text).digest()[:8], "big"))
    colours = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    image = np.repeat(colours, request.height // 4 + 1, axis=0)[: request.height]
    image = np.repeat(image[:, None, :], request.width, axis=1)
    return StageOutput(image=np.ascontiguousarray(image), timings={"compute_s": 0.01})


def advance_forever(runner: PipelineRunner, renders) -> None:
    """Move every running pipeline run on (the job supervisor's part), its job alongside."""

    async def loop() -> None:
        while True:
            for run in runner.registry.list(status="running", limit=None):
                if run.pipeline is None or run.stage is not None:
                    continue
                tenants.current_tenant.set(run.owner)
                try:
                    ended = await runner.advance(run.id)
                except Exception:  # noqa: BLE001 - a test stand-in: try again next round
                    continue
                job = renders.jobs.jobs.find(run.id)
                if job is not None:
                    status = ended.status if ended.status != "rejected" else "cancelled"
                    renders.jobs.jobs.save(job.model_copy(update={"status": status}))
            await asyncio.sleep(POLL_S)

    asyncio.run(loop())


def campaign_runner(renders):
    """The detached campaign runner's part: a `CampaignLoop` in a thread, as its tenant.

    Items whose prompt says "broken" fail their first attempt (the board lists them, and
    retries them).
    """
    settings = LoopSettings(max_attempts=1, backoff_s=0.01, status_interval_s=0.2)
    failed_once: set[str] = set()

    async def render_job(job, run_id: str):
        if "broken" in str(job.request.get("prompt", "")) and job.key not in failed_once:
            failed_once.add(job.key)
            raise RequestError("prompt", f"{job.item_id} cannot be drawn")
        colour = hashlib.sha256(job.key.encode()).digest()[:3]
        image = np.full((job.height, job.width, 3), list(colour), dtype=np.uint8)
        key = renders.store.put_bytes(render_key(job, "png"), encode_image(image, "png"))
        return job_record(job, renders.config, run_id, outputs={"image": key})

    def start(config, manifest, *args, **kwargs) -> None:
        jobs = plan_campaign(parse_manifest(manifest, "yaml"), config)
        owner = tenants.current_tenant.get()  # asyncio.to_thread passed the request's on

        def run() -> None:
            tenants.current_tenant.set(owner)
            loop = CampaignLoop(renders.store, config, jobs, render_job, settings=settings)
            asyncio.run(loop.run())

        threading.Thread(target=run, daemon=True).start()

    return start


def main(root: Path, keys_file: Path, port: int) -> None:
    config = config_for(
        root, {"keys_file": str(keys_file)}, pipelines=PIPELINES, limits=LIMITS, models=MODELS
    )
    renders = install(config, pytest.MonkeyPatch())
    runner = PipelineRunner(config, renders.store, fake_stage, renders.registry)
    api.state.pipeline_runner = runner
    pytest.MonkeyPatch().setattr("serve.routes.campaigns.start_runner", campaign_runner(renders))
    threading.Thread(target=advance_forever, args=(runner, renders), daemon=True).start()
    large = LargeJobs(renders, root.parent / "spool", root.parent / "hold")
    large.guard(serve_jobs.supervisor())
    threading.Thread(target=large.run_forever, daemon=True).start()
    uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
