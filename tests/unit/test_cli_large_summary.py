"""The one line the CLI (and `make demo`) prints for a finished large-format job."""

from __future__ import annotations

from pathlib import Path

from cli.jobs import describe

VIEW = {"id": "20261206-000000-000000-0badcafe", "width": 4096, "height": 1024, "seed": 7}


def _line(**metrics: float) -> str:
    view = {**VIEW, "result": {"metrics": {"tiles": 333, **metrics}, "seam_score": 0.94}}
    return describe(view, Path("out/billboard.png"), 25.04)


def test_a_refined_job_names_its_models_replicas():
    line = _line(replicas_used=3, tiles_cut=0)
    assert "(4096x1024, render 20261206-000000-000000-0badcafe, seed 7)" in line
    assert "333 tiles on 3 replicas, seam score 0.940, 25.0 s" in line
    assert "333 tiles on 1 replica," in _line(replicas_used=1)


def test_an_unrefined_hires_says_its_tiles_were_cut_and_where_the_upscaler_ran():
    line = _line(replicas_used=1, tiles_cut=333, upscaler_calls=25, upscaler_replicas_used=2)
    assert (
        "333 tiles cut from the upscaled base, not refined, "
        "upscaled in 25 tiles on 2 replicas of the upscaler, seam score 0.940"
    ) in line
