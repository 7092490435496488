"""The full scenes suite is exactly the 200 held-out prompts (and 20 of them hires)."""

from __future__ import annotations

from pathlib import Path

from core.experiments.suite import load_suite
from core.scenes import held_out, sample_prompts

FULL = Path(__file__).resolve().parents[3] / "examples" / "suites" / "scenes-full.yaml"


def test_the_full_suite_is_the_held_out_prompts():
    suite, _ = load_suite(FULL)
    prompts = [prompt for prompt, _ in sample_prompts(0, 200, "eval", full=True)]
    native = [c for c in suite.cases if c.mode == "auto"]
    hires = [c for c in suite.cases if c.mode == "hires"]
    assert [c.prompt for c in native] == prompts and all(held_out(p) for p in prompts)
    assert [c.prompt for c in hires] == prompts[:20]
    assert {(c.width, c.height) for c in hires} == {(512, 512)}
