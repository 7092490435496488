"""A pipeline re-run that sets a scheduler or adapter its stage's model does not allow is a
422 naming `stages.<stage>.<field>`; the model's own scheduler is accepted."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serve.api_app import api
from tests.api.inprocess import config_for, install


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
