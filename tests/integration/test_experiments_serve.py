"""`rendercluster eval` on the shared real cluster: the example suite on the scenes model
(trained here, its pictures checked against their prompts), its hires case a real
large-format job (seam score, clauses kept), every figure measured and stored.

The in-process tests (tests/api/test_experiments.py) prove the gate with doubles.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

SUITE = Path(__file__).resolve().parents[2] / "examples" / "suites" / "scenes-small.yaml"


def test_the_example_suite_runs_on_the_scenes_model(cluster, tmp_path):
    report = tmp_path / "report.html"
    args = ["eval", str(SUITE), "--model", "scenes", "--url", cluster.url, "--json"]
    result = CliRunner().invoke(app, [*args, "--report", str(report)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    figures = answer["summary"]["scenes"]
    assert set(figures) == {
        "adherence",
        "hires_kept",
        "gate_pass_rate",
        "seam_score",
        "layout_variance",
        "latency_s",
        "cost_per_image",
    }
    # The scenes model reads back (the tiny random model scores under 0.5 here).
    assert figures["adherence"] >= 0.6 and figures["seam_score"] > 0
    shown = CliRunner().invoke(
        app, ["experiments", "show", answer["id"], "--url", cluster.url, "--json"]
    )
    record = json.loads(shown.stdout)
    assert record["models"][0] == {
        "name": "scenes",
        "source": "models/scenes",
        "revision": None,  # a local folder: no pinned revision
        "family": "sd",
    }
    hires = [s for s in record["samples"] if s["case"] == "hires"]
    assert hires and all(s["large"] and s["width"] == 512 and s["seam_score"] for s in hires)
    assert all(s["hires_kept"] is (not s["hires_lost"]) for s in hires)
    assert report.read_text().count("data:image/png;base64,") == len(record["samples"])
