"""The pipeline routes over HTTP: the approval gate, re-runs from the cache, run queries."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.waiting import wait_until

PROMPT = "a lighthouse poster, bold headline"


def wait_for(http: httpx.Client, run_id: str, statuses: set[str], timeout_s: float = 120) -> dict:
    """Poll a pipeline run until its status is one of `statuses`."""
    return wait_until(
        lambda: http.get(f"/v1/pipelines/runs/{run_id}").json(),
        lambda view: view["status"] in statuses,
        timeout_s=timeout_s,
        what=f"pipeline run {run_id} to reach one of {sorted(statuses)}",
    )


def run_id_of(png: bytes) -> str:
    """The run id a delivered PNG carries."""
    with Image.open(io.BytesIO(png)) as image:
        return image.text["run_id"]


def stage_table(view: dict) -> list[tuple[str, str, str | None]]:
    return [(s["name"], s["status"], s.get("cache")) for s in view["stages"]]


def test_pipelines_are_listed_with_their_stages(cluster):
    with cluster.client() as http:
        listing = http.get("/v1/pipelines").json()["pipelines"]
    standard = next(p for p in listing if p["name"] == "standard")
    assert [s["name"] for s in standard["stages"]] == ["draft", "layout", "final", "hires"]
    assert standard["stages"][2]["approval"] == "required"


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/pipelines/nope/runs", {"prompt": "x"}, 404, "name"),
        ("/v1/pipelines/standard/runs", {"seed": 1}, 422, "prompt"),
        ("/v1/pipelines/standard/runs", {"prompt": "x", "seed": -1}, 422, "seed"),
        (
            "/v1/pipelines/standard/runs",
            {"prompt": "x", "reference": "not base64!"},
            422,
            "reference",
        ),
        ("/v1/pipelines/standard/runs", {"prompt": "x", "mask": "aGVsbG8="}, 422, "mask"),
        ("/v1/renders/20250101-120000-000000-1a2b3c4d/approve", {}, 404, "id"),
        ("/v1/renders/not-an-id/reject", {}, 422, "id"),
    ],
)
def test_bad_requests_name_the_field(cluster, path, body, status, field):
    with cluster.client() as http:
        response = http.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_gate_reject_approve_rerun_and_query(cluster):
    with cluster.client() as http:
        # a run waits at the final stage's gate; rejecting it ends it
        first = http.post(
            "/v1/pipelines/standard/runs", json={"prompt": PROMPT, "seed": 5, "wait": True}
        )
        assert first.status_code == 200, first.text
        first = first.json()
        assert first["status"] == "awaiting_approval"
        assert stage_table(first) == [
            ("draft", "done", "miss"),
            ("layout", "done", "miss"),
            ("final", "done", "miss"),
            ("hires", "pending", None),
        ]
        image = http.get(first["stages"][2]["url"])
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        assert run_id_of(image.content) == first["stages"][2]["run_id"]  # issue 14
        rejected = http.post(f"/v1/renders/{first['id']}/reject", json={"reason": "too dark"})
        assert rejected.json()["status"] == "rejected" and "too dark" in rejected.json()["error"]
        assert stage_table(rejected.json())[3] == ("hires", "skipped", None)
        again = http.post(f"/v1/renders/{first['id']}/approve")
        assert again.status_code == 422 and again.json()["error"]["field"] == "id"

        # a second run, started without waiting, reaches the gate in the background
        started = http.post("/v1/pipelines/standard/runs", json={"prompt": PROMPT, "seed": 6})
        assert started.status_code == 202 and started.json()["status"] == "running"
        second = wait_for(http, started.json()["id"], {"awaiting_approval", "failed"})
        assert second["status"] == "awaiting_approval", second["error"]

        # re-run its final stage with more steps: draft and layout come from the cache
        rerun = http.post(
            f"/v1/renders/{second['id']}/rerun",
            json={"stage": "final", "set": {"steps": 5}, "wait": True},
        )
        assert rerun.status_code == 200, rerun.text
        rerun = rerun.json()
        assert rerun["parent_id"] == second["id"] and rerun["status"] == "awaiting_approval"
        assert [s["cache"] for s in rerun["stages"][:3]] == ["hit", "hit", "miss"]
        assert rerun["stages"][2]["params"]["steps"] == 5
        for body, field in [
            ({"stage": "nope"}, "stage"),
            ({"stage": "final", "set": {"colour": 1}}, "set"),
            ({"stage": "final", "set": {"steps": 0}}, "set"),
        ]:
            bad = http.post(f"/v1/renders/{second['id']}/rerun", json=body)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field, bad.text

        # approving moves it past the gate, in the background, to the hires stage
        approved = http.post(f"/v1/renders/{second['id']}/approve")
        assert approved.status_code == 202 and approved.json()["status"] == "running"
        assert stage_table(approved.json())[3] == ("hires", "running", None)
        done = wait_for(http, second["id"], {"done", "failed"})
        assert done["status"] == "done", done["error"]
        assert done["stages"][3]["status"] == "done" and done["result"]["url"]
        hires = http.get(done["result"]["url"])  # the hires stage's file, tagged at delivery
        assert run_id_of(hires.content) == done["stages"][3]["run_id"]

        # the records answer queries and diffs
        ids = {
            run["id"]
            for run in http.get("/v1/runs", params={"pipeline": "standard"}).json()["runs"]
        }
        assert {first["id"], second["id"], rerun["id"]} <= ids
        final_a, final_b = second["stages"][2]["run_id"], rerun["stages"][2]["run_id"]
        changes = http.get(f"/v1/runs/{final_a}/diff/{final_b}").json()["changes"]
        assert {"field": "params.steps", "a": 4, "b": 5} in changes
