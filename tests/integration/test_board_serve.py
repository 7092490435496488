"""The review board under real Serve, in headless Chromium: keys on, behind a route prefix.

A second application (route prefix `/board`, a keys file, one CPU model) runs beside the
shared cluster's. A person signs in, finds a real render in the gallery with its
thumbnail, opens it, and cannot reach another tenant's run.
"""

from __future__ import annotations

import contextlib

import pytest
import ray
from ray import serve

from actors.job_supervisor import supervisor
from actors.rate_limiter import rates_name
from actors.remote_limiter import LIMITER_NAMESPACE
from serve.app import application
from tests.integration.keyed_app import keyed_cpu_config
from tests.ui.chromium import (
    DEADLINE_S,
    chromium_driver,
    click_and_load,
    skip_without_chromium,
    text_of,
)
from tests.waiting import wait_until

APP, PREFIX = "board", "/board"
skip_without_chromium()
By = pytest.importorskip("selenium.webdriver.common.by").By


@pytest.fixture
def browser():
    with chromium_driver() as driver:
        yield driver


@pytest.fixture
def board(cluster, tmp_path):
    config, acme, globex = keyed_cpu_config(cluster.config, tmp_path)
    serve.run(application(config), name=APP, route_prefix=PREFIX)
    try:
        yield acme, globex
    finally:
        serve.delete(APP)
        with contextlib.suppress(ValueError):
            ray.kill(supervisor(APP), no_restart=True)
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(rates_name(APP), namespace=LIMITER_NAMESPACE), no_restart=True)


def test_a_person_signs_in_and_sees_only_their_renders_under_serve(cluster, board, browser):
    acme, globex = board
    with cluster.client() as http:
        runs = []
        for key, prompt in [(acme, "a green comet"), (globex, "globex's comet")]:
            body = {"prompt": prompt, "width": 64, "height": 64, "seed": 3, "steps": 1}
            answer = http.post(f"{PREFIX}/v1/renders", json=body, headers={"X-API-Key": key})
            assert answer.status_code == 200, answer.text
            runs.append(answer.json()["id"])
    mine, theirs = runs
    base = cluster.url + PREFIX
    browser.get(f"{base}/ui/runs")
    assert browser.current_url == f"{base}/ui/login"
    browser.find_element(By.ID, "api_key").send_keys(acme)
    click_and_load(browser, "#sign-in")
    assert browser.current_url == f"{base}/ui/runs"
    cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .run")
    assert [card.get_attribute("data-run") for card in cards] == [mine]
    wait_until(
        lambda: browser.execute_script("return document.querySelector('img.thumb').naturalWidth"),
        timeout_s=DEADLINE_S,
        what="the render's thumbnail, made by the ingress, to load",
    )
    click_and_load(browser, "#gallery .run")
    assert text_of(browser, "#run-id") == mine and text_of(browser, "#prompt") == "a green comet"
    browser.get(f"{base}/ui/runs/{theirs}")
    assert "no run" in text_of(browser, "#error-message")


def test_a_large_job_under_serve_shows_its_rows_and_zooms_to_full_resolution(
    cluster, board, browser
):
    """The real path: the job supervisor's router writes the preview of the finished rows,
    the jobs page shows it, and the run page's deep zoom (behind the route prefix) loads
    full-resolution tiles of the artifact."""
    acme, _ = board
    body = {"prompt": "a wide green comet", "width": 256, "height": 128, "seed": 4, "steps": 1}
    body |= {"mode": "tiled", "wait": False}
    with cluster.client() as http:
        answer = http.post(f"{PREFIX}/v1/renders", json=body, headers={"X-API-Key": acme})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
    base = cluster.url + PREFIX
    browser.get(f"{base}/ui/login")
    browser.find_element(By.ID, "api_key").send_keys(acme)
    click_and_load(browser, "#sign-in")
    browser.get(f"{base}/ui/jobs")
    row = f"tr.job[data-job='{job_id}']"
    wait_until(
        lambda: text_of(browser, f"{row} .rows"),
        lambda rows: rows == "128/128 rows",
        timeout_s=300,
        what=f"job {job_id}'s preview of all its rows",
    )
    preview = browser.find_element(By.CSS_SELECTOR, f"{row} img.preview")
    assert preview.get_attribute("src").startswith(f"{base}/ui/jobs/{job_id}/preview.png")
    wait_until(  # the poll may have just set a newer version's src: let it load
        lambda: browser.execute_script(
            "const image = document.querySelector(arguments[0]);"
            "return image ? image.naturalWidth : 0;",
            f"{row} img.preview",
        ),
        lambda width: width == 256,
        timeout_s=30,
        what=f"job {job_id}'s preview image to load",
    )
    wait_until(
        lambda: text_of(browser, f"{row} .status"),
        lambda status: status == "done",
        timeout_s=60,
        what=f"job {job_id} to show done",
    )
    browser.get(f"{base}/ui/runs/{job_id}")
    assert browser.find_elements(By.ID, "zoom-open"), text_of(browser, "main")
    browser.find_element(By.ID, "zoom-open").click()
    tiles = wait_until(
        lambda: browser.execute_script(
            "var t = Array.from(document.querySelectorAll('img.dz-tile[data-level=\"8\"]'));"
            "return t.length && t.every(i => i.complete && i.naturalWidth > 0)"
            " ? t.map(i => [i.src, i.naturalWidth, i.naturalHeight]) : null"
        ),
        timeout_s=60,
        what="the deepest level's tiles (level 8 of a 256 px picture)",
    )
    assert tiles == [[f"{base}/ui/tiles/{job_id}/image/8/0_0.jpg", 256, 128]]
