"""Campaigns over HTTP: submit, follow to the end, records, report; resume; bad manifests."""

from __future__ import annotations

import re
import time
import uuid
from html import unescape
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.waiting import wait_until

SMALL = """
campaign: {name}
defaults: {{style: draft, sizes: [64x64, 128x64], steps: 2}}
items:
  - {{id: fox, prompt: a red fox in snow}}
  - {{id: kite, prompt: a blue kite over a beach}}
  - prompt: a green teapot on a table
"""


def submit(http: httpx.Client, body: dict[str, Any], timeout_s: float = 10) -> httpx.Response:
    """POST a campaign, waiting out a 409 while a finished runner is still exiting."""
    return wait_until(
        lambda: http.post("/v1/campaigns", json=body),
        lambda response: response.status_code != 409,
        timeout_s=timeout_s,
        what="POST /v1/campaigns to be answered with anything but 409",
        describe=lambda response: f"{response.status_code} {response.text}",
    )


def wait_finished(http: httpx.Client, name: str, timeout_s: float = 60) -> dict[str, Any]:
    return wait_until(
        lambda: http.get(f"/v1/campaigns/{name}").json(),
        lambda view: view["state"] != "running",
        timeout_s=timeout_s,
        what=f"campaign {name} to stop running",
    )


def test_a_campaign_renders_each_item_and_size_once_and_links_all_in_its_report(cluster):
    name = f"it-{uuid.uuid4().hex[:8]}"
    body = {"manifest": SMALL.format(name=name), "format": "yaml", "max_in_flight": 4}
    with cluster.client() as http:
        started = time.perf_counter()
        submitted = submit(http, body)
        assert submitted.status_code == 202, submitted.text
        assert submitted.json()["status_url"].endswith(f"/v1/campaigns/{name}")
        assert (submitted.json()["total"], submitted.json()["done"]) == (6, 0)

        view = wait_finished(http, name)
        elapsed = time.perf_counter() - started
        print(f"\n6 renders in {elapsed:.1f}s; runner: {view['runner']}")
        assert (view["state"], view["done"], view["failed"], view["in_flight"]) == (
            "finished",
            6,
            0,
            0,
        )
        runner = view["runner"]
        assert 1 <= runner["max_in_flight_observed"] <= runner["bound_max"] <= 4
        assert runner["rendered"] == 6 and runner["failed_attempts"] == 0

        runs = http.get("/v1/runs", params={"campaign": name}).json()["runs"]
        assert len(runs) == 6 and len({run["id"] for run in runs}) == 6
        assert {(run["kind"], run["status"], run["model"]) for run in runs} == {
            ("campaign-item", "done", "fast")
        }
        assert sorted((run["params"]["width"], run["params"]["height"]) for run in runs) == (
            [(64, 64)] * 3 + [(128, 64)] * 3
        )

        report = http.get(view["report_url"])
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
        # attribute values as a browser reads them (each link carries its own signature)
        images = [unescape(h) for h in re.findall(r'<a class="image" href="([^"]+)"', report.text)]
        records = [
            unescape(h) for h in re.findall(r'<a class="record" href="([^"]+)"', report.text)
        ]
        assert len(images) == len(set(images)) == 6 and len(records) == 6
        for href in images:
            image = http.get(urljoin(view["report_url"], href))
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        linked = {http.get(urljoin(view["report_url"], href)).json()["id"] for href in records}
        assert linked == {run["id"] for run in runs}
        csv = http.get(view["csv_url"]).text.strip().splitlines()
        assert len(csv) == 7

        again = submit(http, body)  # the same manifest again: nothing left to render
        assert again.status_code == 202 and again.json()["done"] == 6
        assert wait_finished(http, name)["runner"]["skipped"] == 6
        assert len(http.get("/v1/runs", params={"campaign": name}).json()["runs"]) == 6


def test_a_bad_manifest_is_refused_up_front_naming_every_problem(cluster):
    broken = {
        "campaign": "Spring Sale",
        "defaults": {"sizes": ["1:1"], "colour": "red"},
        "items": [{"id": "a", "prompt": "a fox"}, {"id": "b"}, {"prompt": "a hen", "sizes": "9:x"}],
    }
    unrenderable = {
        "manifest": (
            "campaign: unrenderable\n"
            "defaults: {style: draft}\n"
            "items:\n"
            "  - {prompt: a fox, sizes: [296x250], steps: 80}\n"  # one call: on the grid
            "  - {prompt: a hen, style: neon, sizes: [64x64]}\n"
        )
    }
    with cluster.client() as http:
        first = http.post("/v1/campaigns", json=broken)
        second = http.post("/v1/campaigns", json=unrenderable)
        unknown = http.get("/v1/campaigns/never-submitted")

    assert first.status_code == 422
    problems = first.json()["problems"]
    assert len(problems) == 4, problems
    for where in ("campaign", "defaults.colour", "items[1].prompt", "items[2].sizes"):
        assert any(p.startswith(where) for p in problems), (where, problems)
    assert "4 problem(s)" in first.json()["error"]["message"]

    assert second.status_code == 422
    problems = second.json()["problems"]
    assert len(problems) == 3, problems
    for text in ("items[0].steps", "height 250", "items[1].style: style 'neon'"):
        assert any(text in p for p in problems), (text, problems)

    assert unknown.status_code == 404
