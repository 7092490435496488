"""A pipeline re-run that sets a scheduler or adapter its stage's model does not allow is a
422 naming `stages.<stage>.<field>`; the model's own scheduler is accepted."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient

from actors.pipeline_runner import PipelineRunner
from actors.pipeline_state import PipelineRunState
from serve.api_app import api
from tests.api.inprocess import config_for, install
from tests.api.test_ui_session import CSRF
from tests.ui.board_server import fake_stage


def test_a_rerun_choosing_outside_the_stage_model_allow_lists_is_a_422_naming_it(
    tmp_path, monkeypatch
):
    install(config_for(tmp_path / "store"), monkeypatch)
    with TestClient(api) as http:
        run = http.post("/v1/pipelines/two/runs", json={"prompt": "a cat"}).json()["id"]
        for chosen, field, message in [
            ({"scheduler": "lms"}, "stages.base.scheduler", "'lms' is not a scheduler"),
            ({"loras": [{"name": "ink"}]}, "stages.base.loras[0].name", "(allowed: none)"),
        ]:
            refused = http.post(f"/v1/renders/{run}/rerun", json={"stage": "base", "set": chosen})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["field"] == field
            assert message in refused.json()["error"]["message"]
        own = {"stage": "base", "set": {"scheduler": "default"}}
        accepted = http.post(f"/v1/renders/{run}/rerun", json=own)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["overrides"] == {"scheduler": "default"}


def test_the_boards_rerun_form_offers_and_sends_the_stage_models_scheduler_and_adapters(
    tmp_path, monkeypatch
):
    tiny = {
        "source": "tiny:0",
        "native_resolution": 64,
        "schedulers": ["euler", "ddim"],
        "loras": [{"name": "ink", "source": "/loras/ink.safetensors", "scale": 0.8}],
    }
    stages = [{"name": "base", "model": "tiny", "width": 64, "height": 64}]
    config = config_for(
        tmp_path / "store", models={"tiny": tiny}, pipelines={"one": {"stages": stages}}
    )
    renders = install(config, monkeypatch)
    runner = PipelineRunner(config, renders.store, fake_stage, renders.registry)
    api.state.pipeline_runner = runner  # install's monkeypatch takes it away again
    with TestClient(api) as http:
        run = http.post("/v1/pipelines/one/runs", json={"prompt": "a cat"}).json()["id"]
        assert asyncio.run(runner.advance(run)).status == "done"  # the supervisor's part
        page = http.get(f"/ui/runs/{run}").text
        assert '<option value="ddim">ddim</option>' in page
        assert 'name="loras" type="text" class="field-loras"' in page
        token = CSRF.search(page).group(1)
        form = {"csrf": token, "stage": "base", "scheduler": "ddim", "loras": "ink:0.5"}
        moved = http.post(f"/ui/approvals/{run}/rerun", data=form, follow_redirects=False)
        assert moved.status_code == 303, moved.text
        new_id = moved.headers["location"].rsplit("/", 1)[-1]
        assert asyncio.run(runner.advance(new_id)).status == "done"
        state = PipelineRunState.from_record(renders.registry.get(new_id))
        params = renders.registry.get(state.stage_runs["base"]).params
        assert (params["scheduler"], params["loras"]) == ("ddim", [{"name": "ink", "scale": 0.5}])
        for loras, message in [("ink:99", "loras"), ("ink, ink", "named twice")]:
            refused = http.post(f"/ui/approvals/{run}/rerun", data={**form, "loras": loras})
            assert refused.status_code == 422, refused.text
            assert message in refused.text and "Traceback" not in refused.text
