"""The suite's figures, the PR gate's comparison, scorers by name, and suite loading."""

from __future__ import annotations

import pytest
import yaml

from core.errors import RequestError
from core.experiments import scorers
from core.experiments.gate import compare, parse_max_drops, regressions
from core.experiments.metrics import summary
from core.experiments.record import ExperimentRecord, ExperimentRegistry, Sample
from core.experiments.report import report_html
from core.experiments.suite import SuiteError, load_suite
from core.scenes import render
from core.store import LocalStore
from core.tenants import current_tenant

DIGEST = "0" * 64


def sample(model: str, adherence: float, latency: float, **extra) -> Sample:
    return Sample(
        case="c",
        model=model,
        seed=0,
        status="done",
        latency_s=latency,
        adherence=adherence,
        **extra,
    )


def experiment(figures: dict[str, dict[str, float]], digest: str = DIGEST) -> ExperimentRecord:
    models = [{"name": name} for name in figures]
    return ExperimentRecord(
        suite="s",
        suite_sha256=digest,
        suite_content={},
        scorer="scenes",
        models=models,
        summary=figures,
    )


def test_summary_means_each_metric_per_model_and_leaves_out_what_nothing_measured():
    samples = [
        sample("a", 1.0, 2.0, gate_passed=True),
        sample("a", 0.5, 4.0, gate_passed=False, seam_score=1.02, hires_kept=True),
        sample("b", 0.0, 1.0),
    ]
    figures = summary(
        samples,
        {("c", "a"): 0.1},
        ["adherence", "hires_kept", "gate_pass_rate", "seam_score", "layout_variance", "latency_s"],
    )
    assert figures["a"] == {
        "adherence": 0.75,
        "hires_kept": 1.0,
        "gate_pass_rate": 0.5,
        "seam_score": 1.02,
        "layout_variance": 0.1,
        "latency_s": 3.0,
    }
    assert figures["b"] == {"adherence": 0.0, "latency_s": 1.0}


def test_a_drop_is_a_fall_of_a_higher_is_better_metric_and_a_rise_of_the_others():
    old = experiment({"m": {"adherence": 0.9, "latency_s": 1.0, "seam_score": 1.01}})
    new = experiment({"m": {"adherence": 0.8, "latency_s": 3.0, "seam_score": 1.0}})
    drops = {row.metric: row.drop for row in compare(old, new)}
    assert drops == pytest.approx({"adherence": 0.1, "latency_s": 2.0, "seam_score": -0.01})
    assert regressions(old, new, {"adherence": 0.2, "seam_score": 0.0}) == []
    found = regressions(old, new, {"adherence": 0.05, "latency_s": 1.0})
    assert [line.split()[1] for line in found] == ["adherence", "latency_s"]


def test_models_pair_by_name_or_one_to_one_and_suites_must_match():
    old, new = experiment({"a": {"adherence": 1.0}}), experiment({"b": {"adherence": 0.0}})
    assert regressions(old, new, {"adherence": 0.5})  # one model each: compared
    two = experiment({"c": {"adherence": 1.0}, "d": {"adherence": 1.0}})
    with pytest.raises(RequestError, match="no model to compare"):
        compare(old, two)
    with pytest.raises(RequestError, match="another suite"):
        regressions(old, experiment({"a": {}}, "1" * 64), {"adherence": 0.1})


def test_max_drops_are_parsed_and_bad_ones_named():
    assert parse_max_drops(["adherence=0.05", "latency_s=2"]) == {"adherence": 0.05, "latency_s": 2}
    for bad, words in (
        ("beauty=1", "METRIC=VALUE"),
        ("adherence=x", "not a number"),
        ("adherence=-1", ">= 0"),
        ("adherence", "METRIC=VALUE"),
    ):
        with pytest.raises(RequestError, match=words):
            parse_max_drops([bad])


def test_the_scenes_scorer_and_scorers_registered_by_name():
    scenes = scorers.make_scorer("scenes")
    prompt = "a small red circle at the top left on a white background"
    assert scenes.applies(prompt) and not scenes.applies("a photo of a cat")
    assert scenes.score(render(prompt), prompt).score == 1.0
    with pytest.raises(RequestError, match="no scorer 'clip'"):
        scorers.make_scorer("clip")

    class Constant:
        name = "constant"

        def applies(self, prompt):
            return True

        def score(self, image, prompt):
            return scorers.Adherence(0.5, False)

    scorers.register_scorer("constant", lambda **options: Constant())
    try:
        assert "constant" in scorers.scorer_names()
        assert scorers.make_scorer("constant").score(None, "x").score == 0.5
    finally:
        scorers._FACTORIES.pop("constant")


def test_suite_inputs_resolve_beside_the_file_and_missing_ones_are_named(tmp_path):
    (tmp_path / "in.png").write_bytes(b"png")
    suite = {"name": "s", "cases": [{"id": "a", "prompt": "p", "init_image": "in.png"}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    loaded, digest = load_suite(tmp_path / "s.yaml")
    assert loaded.cases[0].init_image == tmp_path / "in.png" and len(digest) == 64
    assert loaded.seeds_of(loaded.cases[0]) == [0, 1]
    suite["cases"][0]["mask"] = "gone.png"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    with pytest.raises(SuiteError, match="cases.a.mask: no file"):
        load_suite(tmp_path / "s.yaml")


def test_the_registry_keeps_tenants_apart(tmp_path):
    registry = ExperimentRegistry(LocalStore(tmp_path))
    token = current_tenant.set("acme")
    try:
        saved = registry.save(experiment({"m": {}}))
        assert saved.owner == "acme" and registry.get(saved.id) == saved
    finally:
        current_tenant.reset(token)
    token = current_tenant.set("rival")
    try:
        assert registry.list() == []
        with pytest.raises(RequestError, match="no experiment"):
            registry.get(saved.id)
    finally:
        current_tenant.reset(token)


def test_the_report_names_the_clauses_a_hires_render_lost():
    lost = sample("m", 0.8, 1.0, hires_kept=False, hires_lost=["object2.shape"])
    kept = sample("m", 1.0, 1.0, hires_kept=True).model_copy(update={"seed": 1})
    record = experiment({"m": {"hires_kept": 0.5}}).model_copy(
        update={"samples": [lost, kept], "suite_content": {"cases": [{"id": "c", "prompt": "p"}]}}
    )
    html = report_html(record, {})
    assert html.count('class="bad lost"') == 1
    assert "hires lost object2.shape" in html
