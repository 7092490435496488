"""`PipelineRunState`: a pipeline run's params, typed, in the JSON its records already hold."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from actors.pipeline_state import PipelineRunState
from core.pipelines import StageConfig
from core.records import RunRecord
from core.typography.schema import TextBox

STAGES = [
    StageConfig(name="draft", model="fast", width=64, height=32).model_dump(mode="json"),
    StageConfig(name="layout", model="fast", width=64, height=32, approval="required").model_dump(
        mode="json"
    ),
    StageConfig(
        name="final", model="quality", width=128, height=64, consumes=["previous"]
    ).model_dump(mode="json"),
]
BOX = TextBox.model_validate(
    {"copy": "Spring SALE", "anchor": {"x": 0.1, "y": 0.6, "w": 0.8}}
).model_dump(mode="json")


def _stored(**params) -> RunRecord:
    """A pipeline run as the store holds it (through its JSON, as a reader elsewhere sees it)."""
    record = RunRecord(
        kind="render",
        status="running",
        model="quality",
        model_source="tiny:0",
        pipeline="three",
        params=params,
    )
    return RunRecord.model_validate_json(record.model_dump_json())


def _params_as_written_before_the_model(**changes) -> dict:
    """The params the runner wrote as a plain dict (key for key, in that order)."""
    return {
        "stages": STAGES,
        "next_stage": 0,
        "stage_runs": {},
        "approved": [],
        "rerun_from": None,
        "overrides": {},
        "input_keys": {},
        "text_boxes": [],
        **changes,
    }


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"next_stage": 2, "stage_runs": {"draft": "r1", "layout": "r2"}, "approved": ["layout"]},
        {"rerun_from": "layout", "overrides": {"steps": "7"}, "input_keys": {"mask": "cas/ab/x"}},
        {"text_boxes": [BOX]},
    ],
)
def test_stored_params_read_and_write_back_unchanged(changes):
    params = _params_as_written_before_the_model(**changes)
    state = PipelineRunState.from_record(_stored(**params))
    assert json.dumps(state.to_params()) == json.dumps(_stored(**params).params)


def test_a_record_from_before_text_boxes_reads_with_no_boxes():
    params = _params_as_written_before_the_model()
    del params["text_boxes"]
    assert PipelineRunState.from_record(_stored(**params)).text_boxes == []


def test_the_state_is_typed():
    state = PipelineRunState.from_record(
        _stored(**_params_as_written_before_the_model(text_boxes=[BOX], rerun_from="layout"))
    )
    assert state.text_boxes[0].text == "Spring SALE"
    assert state.stages[1].approval == "required"
    assert state.force_from == 1 and state.final_size == (128, 64)
    assert [stage.name for stage in state.pipeline.stages] == ["draft", "layout", "final"]


def test_moving_on_returns_new_states():
    state = PipelineRunState.model_validate(_params_as_written_before_the_model())
    done = state.after_stage(0, "r1").after_stage(1, "r2")
    assert done.next_stage == 2 and done.stage_runs == {"draft": "r1", "layout": "r2"}
    assert done.previous_stage.name == "layout"
    assert done.approving("layout").approving("layout").approved == ["layout"]
    assert state.next_stage == 0 and state.stage_runs == {}
    assert done.with_stage_run("final", "r3").stage_runs["final"] == "r3"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"next_stage": 4}, "past 3 stages"),
        ({"rerun_from": "nowhere"}, "no stage 'nowhere'"),
        ({"stage_runs": {"draft": 3}}, "string"),
        ({"surprise": 1}, "Extra inputs"),
        ({"stages": []}, "at least 1"),
    ],
)
def test_a_bad_state_is_refused_with_what_is_wrong(changes, message):
    with pytest.raises(ValidationError, match=message):
        PipelineRunState.model_validate(_params_as_written_before_the_model(**changes))
