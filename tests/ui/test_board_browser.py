"""The review board in a real browser: headless Debian Chromium driven by Selenium.

The server is the in-process API with the board (tests.ui.board_server) in a uvicorn
process of its own. Two tenants: acme signs in and works; globex's runs must stay out
of reach of every page. A screenshot of each page goes to docs/ui/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from core.tenants import TenantLimits, add_key
from tests.live_server import free_port
from tests.ui.chromium import skip_without_chromium
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
# the README's screenshots are remade with RC_UI_SCREENSHOTS=1; other runs keep docs/ as it is
SHOTS = ROOT / "docs" / "ui" if os.environ.get("RC_UI_SCREENSHOTS") else Path("/tmp/rc-ui-shots")
XSS = "<script>window.__pwned = 1</script>"
THINGS = ["kite", "teapot", "broken violin", "lantern"]

skip_without_chromium()
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from tests.ui.chromium import DEADLINE_S, chromium_driver, click_and_load, text_of  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, acme's key, globex's key) of a board served in a process of its own."""
    tmp = tmp_path_factory.mktemp("board")
    keys = tmp / "keys.yaml"
    acme, globex = add_key(keys, "acme", TenantLimits()), add_key(keys, "globex", TenantLimits())
    port = free_port()
    command = [sys.executable, "-m", "tests.ui.board_server", str(tmp / "store"), str(keys)]
    process = subprocess.Popen([*command, str(port)], cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _healthy(url) or process.poll() is not None,
            timeout_s=60,
            what=f"the board server on {url}",
        )
        assert process.poll() is None, "the board server exited"
        yield url, acme, globex
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE_S)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def browser():
    with chromium_driver() as driver:
        yield driver


class Api:
    """The JSON API as a tenant's client (to make work for the board to show)."""

    def __init__(self, url: str, key: str):
        self.http = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=DEADLINE_S)

    def render(self, prompt: str, seed: int, **extra) -> str:
        body = {"prompt": prompt, "width": 64, "height": 64, "seed": seed} | extra
        answer = self.http.post("/v1/renders", json=body)
        assert answer.status_code in (200, 202), answer.text
        return answer.json()["id"]

    def pipeline_at_gate(self, prompt: str) -> str:
        answer = self.http.post("/v1/pipelines/gated/runs", json={"prompt": prompt, "seed": 5})
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["id"]
        wait_until(
            lambda: self.http.get(f"/v1/pipelines/runs/{run_id}").json()["status"],
            lambda status: status == "awaiting_approval",
            timeout_s=DEADLINE_S,
            what=f"pipeline run {run_id} to reach its gate",
        )
        return run_id


def shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def wait_for_text(driver, css: str, wanted: str, what: str) -> str:
    """Reload until the element at `css` says `wanted` (the page is server-rendered)."""

    def look() -> str:
        driver.refresh()
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""

    return wait_until(look, lambda text: wanted in text, timeout_s=DEADLINE_S, what=what)


def test_a_reviewer_signs_in_finds_compares_approves_rejects_reruns_and_cancels(server, browser):
    url, acme_key, globex_key = server
    acme, globex = Api(url, acme_key), Api(url, globex_key)
    red = acme.render(f"a red lighthouse at dusk {XSS}", seed=1)
    blue = acme.render("a blue lighthouse at dawn", seed=2, steps=3)
    secret = globex.render("globex's secret tower", seed=3)
    approve_me = acme.pipeline_at_gate("poster of a harbour")
    reject_me = acme.pipeline_at_gate("poster of a storm")
    theirs = globex.pipeline_at_gate("globex poster")

    _sign_in(browser, url, acme_key)
    _find_and_open(browser, url, red)
    _compare(browser, url, red, blue)
    _approve_and_reject(browser, url, approve_me, reject_me, theirs)
    _rerun(browser, url, approve_me)
    _cancel_a_job(browser, url, acme)
    _campaign_and_contact_sheet(browser, url, acme)
    _other_pages(browser, url)
    _other_tenant_out_of_reach(browser, url, red, secret, theirs)
    assert browser.execute_script("return window.__pwned === undefined")


def _sign_in(browser, url: str, key: str) -> None:
    browser.get(f"{url}/ui/runs")
    assert browser.current_url == f"{url}/ui/login"  # no session: to the sign-in page
    shot(browser, "login")
    browser.find_element(By.ID, "api_key").send_keys("rc_not-a-key")
    click_and_load(browser, "#sign-in")
    assert "not valid" in text_of(browser, "#login-error")
    field = browser.find_element(By.ID, "api_key")
    field.clear()
    field.send_keys(key)
    click_and_load(browser, "#sign-in")
    assert browser.current_url == f"{url}/ui/runs", text_of(browser, "main")
    assert text_of(browser, "#tenant") == "acme"
    cookie = browser.get_cookie("rc_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # scripts never see it


def _find_and_open(browser, url: str, red: str) -> None:
    shot(browser, "runs")
    search = browser.find_element(By.ID, "q")
    search.send_keys("RED lighthouse")
    click_and_load(browser, "#apply")
    cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .run")
    assert [card.get_attribute("data-run") for card in cards] == [red]
    image = cards[0].find_element(By.TAG_NAME, "img")
    assert image.get_attribute("loading") == "lazy" and "/ui/thumbs/" in image.get_attribute("src")
    click_and_load(browser, "#gallery .run")
    assert text_of(browser, "#run-id") == red
    assert XSS in text_of(browser, "#prompt")  # shown as text, never run
    wait_until(
        lambda: browser.execute_script("return document.querySelector('img.thumb').naturalWidth"),
        timeout_s=DEADLINE_S,
        what="the run's thumbnail to load",
    )
    assert not browser.find_element(By.ID, "zoom-image").get_attribute("src")  # not yet asked for
    browser.find_element(By.ID, "zoom-open").click()
    wait_until(
        lambda: browser.execute_script("return document.getElementById('zoom-image').naturalWidth"),
        timeout_s=DEADLINE_S,
        what="the zoom preview to load",
    )
    browser.find_element(By.ID, "zoom-in").click()
    assert browser.find_element(By.ID, "zoom-image").value_of_css_property("width") != "0px"
    assert "200%" in browser.find_element(By.ID, "zoom-image").get_attribute("style")
    shot(browser, "run")


def _compare(browser, url: str, red: str, blue: str) -> None:
    Select(browser.find_element(By.ID, "compare-with")).select_by_value(blue)
    click_and_load(browser, "#compare")
    assert browser.current_url == f"{url}/ui/diff/{red}/{blue}"
    changed = {
        row.get_attribute("data-field")
        for row in browser.find_elements(By.CSS_SELECTOR, "#params tr.changed")
    }
    assert {"prompt", "seed", "params.steps"} <= changed
    assert "model" not in changed
    shot(browser, "diff")
    browser.find_element(By.CSS_SELECTOR, "input[value=difference]").click()
    blend = browser.execute_script("return document.getElementById('top').style.mixBlendMode")
    assert blend == "difference"


def _approve_and_reject(browser, url: str, approve_me: str, reject_me: str, theirs: str) -> None:
    browser.get(f"{url}/ui/approvals")
    waiting = [
        s.get_attribute("data-run")
        for s in browser.find_elements(By.CSS_SELECTOR, "section.approval")
    ]
    assert sorted(waiting) == sorted([approve_me, reject_me])  # not globex's run
    shot(browser, "approvals")
    section = f"section.approval[data-run='{approve_me}']"
    click_and_load(browser, f"{section} button.approve")
    assert text_of(browser, "#run-id") == approve_me
    wait_for_text(browser, "#run-status", "done", f"approved run {approve_me} to finish")
    stages = browser.find_elements(By.CSS_SELECTOR, "#stages tr.stage .status")
    assert [stage.text for stage in stages] == ["done", "done"]
    browser.get(f"{url}/ui/approvals")
    section = f"section.approval[data-run='{reject_me}']"
    browser.find_element(By.CSS_SELECTOR, f"{section} input.reason").send_keys("too dark <b>!</b>")
    click_and_load(browser, f"{section} button.reject")
    assert text_of(browser, "#run-status") == "rejected"
    assert "too dark <b>!</b>" in text_of(browser, "#run-error")


def _rerun(browser, url: str, run_id: str) -> None:
    browser.get(f"{url}/ui/runs/{run_id}")
    Select(browser.find_element(By.CSS_SELECTOR, "select.rerun-stage")).select_by_value("final")
    plan = text_of(browser, ".cache-plan")
    assert plan == "Cache hits: draft. Rendered again: final."
    browser.find_element(By.CSS_SELECTOR, "input.field-steps").send_keys("7")
    click_and_load(browser, "button.do-rerun")
    new_id = text_of(browser, "#run-id")
    assert new_id != run_id
    wait_for_text(browser, "#run-status", "done", f"re-run {new_id} to finish")
    cache = {
        row.get_attribute("data-stage"): row.find_element(By.CSS_SELECTOR, ".cache").text
        for row in browser.find_elements(By.CSS_SELECTOR, "#stages tr.stage")
    }
    assert cache == {"draft": "hit", "final": "miss"}
    assert run_id in text_of(browser, "#parents")  # the lineage names the original
    shot(browser, "rerun")


def _cancel_a_job(browser, url: str, acme: Api) -> None:
    job = acme.pipeline_at_gate("a poster nobody wants")  # its job waits at the gate
    browser.get(f"{url}/ui/jobs")
    row = f"tr.job[data-job='{job}']"
    assert text_of(browser, f"{row} .status") == "awaiting_approval"
    shot(browser, "jobs")
    click_and_load(browser, f"{row} button.cancel")
    wait_until(
        lambda: text_of(browser, f"{row} .status"),
        lambda status: status == "cancelled",
        timeout_s=DEADLINE_S,
        what=f"job {job} to show cancelled",
    )


def _campaign_and_contact_sheet(browser, url: str, acme: Api) -> None:
    items = [{"id": f"item-{n}", "prompt": f"a {thing}"} for n, thing in enumerate(THINGS)]
    manifest = {"campaign": "spring", "defaults": {"sizes": ["1:1"], "steps": 2}, "items": items}
    assert acme.http.post("/v1/campaigns", json=manifest).status_code == 202
    status = wait_until(
        lambda: acme.http.get("/v1/campaigns/spring").json(),
        lambda view: view["state"] == "finished",
        timeout_s=DEADLINE_S,
        what="campaign spring to finish",
    )
    browser.get(f"{url}/ui/campaigns/spring")
    assert text_of(browser, "#campaign-state") == "finished"
    assert "3 of 4 done, 1 failed" in text_of(browser, "#campaign-progress")
    failed = browser.find_elements(By.CSS_SELECTOR, ".failed-item")
    assert len(failed) == 1 and "cannot be drawn" in failed[0].text
    shot(browser, "campaign")
    # the contact sheet, opened through its signed link (no session, no key needed)
    assert browser.find_element(By.ID, "contact-sheet").get_attribute("href").startswith(url)
    browser.get(status["report_url"])
    loaded = wait_until(
        lambda: browser.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        ),
        lambda flags: len(flags) >= 3 and all(flags),
        timeout_s=DEADLINE_S,
        what="every thumbnail of the contact sheet to load",
    )
    assert len(loaded) >= 3
    shot(browser, "contact-sheet")
    browser.get(f"{url}/ui/campaigns/spring")
    click_and_load(browser, "#retry-failed")
    wait_for_text(browser, "#campaign-progress", "4 of 4 done", "the retried item to render")
    assert not browser.find_elements(By.CSS_SELECTOR, ".failed-item")


def _other_pages(browser, url: str) -> None:
    browser.get(f"{url}/ui/experiments")
    assert "does not exist yet" in text_of(browser, "#no-experiments")
    shot(browser, "experiments")
    browser.set_window_size(820, 1180)  # a tablet
    browser.get(f"{url}/ui/runs")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 820, "the gallery scrolls sideways on a tablet"
    shot(browser, "runs-tablet")
    browser.set_window_size(1280, 1000)


def _other_tenant_out_of_reach(browser, url: str, mine: str, secret: str, theirs: str) -> None:
    for path in [
        f"/ui/runs/{secret}",
        f"/ui/runs/{theirs}",
        f"/ui/diff/{mine}/{secret}",
        f"/ui/thumbs/{secret}/image",
    ]:
        browser.get(url + path)
        assert "no run" in text_of(browser, "#error-message"), path
    browser.get(f"{url}/ui/runs?q=globex")
    assert browser.find_elements(By.ID, "no-runs")
    for page in ("/ui/runs", "/ui/approvals", "/ui/jobs"):
        browser.get(url + page)
        source = browser.page_source
        assert secret not in source and theirs not in source, page
