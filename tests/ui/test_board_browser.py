"""The review board in a real browser: headless Debian Chromium driven by Selenium.

The server is the in-process API with the board (tests.ui.board_server) in a uvicorn
process of its own. Two tenants: acme signs in and works; globex's runs must stay out
of reach of every page. A screenshot of each page goes to docs/ui/.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from core.largeformat.row_preview import BLANK, RowPreview
from core.tenants import TenantLimits, add_key
from tests.live_server import free_port
from tests.ui.chromium import skip_without_chromium
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
# the README's screenshots are remade with RC_UI_SCREENSHOTS=1; other runs keep docs/ as it is
SHOTS = ROOT / "docs" / "ui" if os.environ.get("RC_UI_SCREENSHOTS") else Path("/tmp/rc-ui-shots")
XSS = "<script>window.__pwned = 1</script>"
THINGS = ["kite", "teapot", "broken violin", "lantern"]
BILLBOARD = (4096, 2048)
STAGE_FIELDS = ("model", "style", "width", "height", "steps", "guidance", "seed", "quiet_zone")
STAGE_FIELDS += ("scheduler", "loras")  # the stage model's allow-lists

skip_without_chromium()
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
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
        yield url, acme, globex, tmp
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

    def billboard(self, prompt: str, seed: int) -> str:
        """A 4096 x 2048 render on 512 px tiles, as a job (held while `hold` exists)."""
        body = {"prompt": prompt, "width": BILLBOARD[0], "height": BILLBOARD[1], "seed": seed}
        body |= {"model": "poster", "mode": "tiled", "wait": False}
        answer = self.http.post("/v1/renders", json=body)
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/v1/jobs/{job_id}").json()

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
    url, acme_key, globex_key, root = server
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
    billboard = _large_render(browser, url, acme, root)
    _deep_zoom(browser, url, billboard, root)
    _campaign_and_contact_sheet(browser, url, acme)
    _other_pages(browser, url)
    _on_a_tablet(
        browser,
        url,
        [f"/ui/runs/{red}", f"/ui/runs/{approve_me}", f"/ui/runs/{billboard}"]
        + [f"/ui/diff/{red}/{blue}", "/ui/approvals", "/ui/jobs", "/ui/campaigns/spring"],
    )
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
    assert not browser.find_elements(By.CSS_SELECTOR, "img.dz-tile")  # not yet asked for
    shot(browser, "run")
    browser.find_element(By.ID, "zoom-open").click()
    _wait_for_tiles(browser, 6)  # a 64 px picture: its level 6 is its full resolution


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
    final = browser.find_element(By.CSS_SELECTOR, "fieldset.stage-fields[data-stage='final']")
    draft = browser.find_element(By.CSS_SELECTOR, "fieldset.stage-fields[data-stage='draft']")
    assert final.is_displayed() and not draft.is_displayed()  # the chosen stage's own fields
    assert _names(final) == [*STAGE_FIELDS[:6], "strength", *STAGE_FIELDS[6:]]
    assert _names(draft) == list(STAGE_FIELDS)  # drawn from the prompt alone: no strength
    width = final.find_element(By.CSS_SELECTOR, "input.field-width")
    assert width.get_attribute("placeholder") == "96" and width.get_attribute("min") == "8"
    final.find_element(By.CSS_SELECTOR, "input.field-steps").send_keys("7")
    scheduler = Select(final.find_element(By.CSS_SELECTOR, "select.field-scheduler"))
    assert [option.text for option in scheduler.options] == [
        *("unset (unchanged)", "default", "euler", "ddim")
    ]
    scheduler.select_by_value("ddim")
    final.find_element(By.CSS_SELECTOR, "input.field-loras").send_keys("ink:0.5")
    click_and_load(browser, "button.do-rerun")
    new_id = text_of(browser, "#run-id")
    assert new_id != run_id
    wait_for_text(browser, "#run-status", "done", f"re-run {new_id} to finish")
    Select(browser.find_element(By.CSS_SELECTOR, "select.rerun-stage")).select_by_value("final")
    final = browser.find_element(By.CSS_SELECTOR, "fieldset.stage-fields[data-stage='final']")
    chosen = Select(final.find_element(By.CSS_SELECTOR, "select.field-scheduler"))
    assert chosen.options[0].text == "ddim (unchanged)"  # the re-run's stage as it ran
    loras = final.find_element(By.CSS_SELECTOR, "input.field-loras")
    assert loras.get_attribute("placeholder") == "ink:0.5"
    cache = {
        row.get_attribute("data-stage"): row.find_element(By.CSS_SELECTOR, ".cache").text
        for row in browser.find_elements(By.CSS_SELECTOR, "#stages tr.stage")
    }
    assert cache == {"draft": "hit", "final": "miss"}
    assert run_id in text_of(browser, "#parents")  # the lineage names the original
    shot(browser, "rerun")


def _names(fieldset) -> list[str]:
    return [
        field.get_attribute("name") for field in fieldset.find_elements(By.CSS_SELECTOR, "[name]")
    ]


def _cancel_a_job(browser, url: str, acme: Api) -> None:
    job = acme.pipeline_at_gate("a poster nobody wants")  # its job waits at the gate
    browser.get(f"{url}/ui/jobs")
    row = f"tr.job[data-job='{job}']"
    assert text_of(browser, f"{row} .status") == "awaiting_approval"
    click_and_load(browser, f"{row} button.cancel")
    wait_until(
        lambda: text_of(browser, f"{row} .status"),
        lambda status: status == "cancelled",
        timeout_s=DEADLINE_S,
        what=f"job {job} to show cancelled",
    )


PIXELS_JS = """
return Array.from(document.querySelectorAll(arguments[0]))
  .filter(function (img) { return img.complete && img.naturalWidth > 0; })
  .slice(0, arguments[1])
  .map(function (img) {
    var canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    canvas.getContext("2d").drawImage(img, 0, 0);
    return [Object.assign({}, img.dataset), canvas.toDataURL("image/png")];
  });
"""


WHEEL_JS = """
var view = document.getElementById("dz-view"), box = view.getBoundingClientRect();
for (var i = 0; i < arguments[0]; i++) {
  view.dispatchEvent(new WheelEvent("wheel", {deltaY: -100, bubbles: true, cancelable: true,
    clientX: box.left + box.width / 2, clientY: box.top + box.height / 2}));
}
"""


def _pixels_in_browser(browser, css: str, most: int = 1) -> list[tuple[dict, np.ndarray]]:
    """What the browser decoded of the images at `css` (drawn onto a canvas, read back)."""
    found = browser.execute_script(PIXELS_JS, css, most)
    return [(data, _decode(url.split(",", 1)[1])) for data, url in found]


def _decode(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def _stored_image(root: Path, key: str) -> np.ndarray:
    with Image.open(root / "store" / key) as image:
        return np.asarray(image.convert("RGB"))


def _wait_for_tiles(browser, level: int) -> list:
    """The tiles of `level` in view, once every one of them has loaded."""
    css = f"img.dz-tile[data-level='{level}']"
    return wait_until(
        lambda: browser.execute_script(
            "var t = Array.from(document.querySelectorAll(arguments[0]));"
            "return t.length && t.every(i => i.complete && i.naturalWidth > 0) ? t : null",
            css,
        ),
        timeout_s=DEADLINE_S * 3,  # the first view cuts the pyramid
        what=f"the deep-zoom tiles of level {level}",
    )


def _large_render(browser, url: str, acme: Api, root: Path) -> str:
    """A billboard's live preview on /ui/jobs (top rows finished, the rest blank), a running
    large render cancelled from the page, then the billboard finished; its run id."""
    hold = root / "hold"
    hold.write_text("")
    billboard = acme.billboard("a billboard held after its second row of tiles", seed=4)
    wait_until(
        lambda: acme.job(billboard)["progress"],
        lambda p: p["total"] and p["done"] >= 2 * 9,  # 9 columns of tiles: two rows in
        timeout_s=DEADLINE_S * 3,
        what="the billboard's first two rows of tiles",
    )
    time.sleep(1.5)  # the preview's writer stores the newest rows within a second
    note_path = root / "store" / "job-previews" / f"{billboard}.json"
    note = json.loads(note_path.read_text())
    assert note["owner"] == "acme" and 0 < note["rows_done"] < BILLBOARD[1]
    version = f"1-{note['rows_done']}"
    browser.get(f"{url}/ui/jobs")
    row = f"tr.job[data-job='{billboard}']"
    assert text_of(browser, f"{row} .status") == "running"
    wait_until(
        lambda: browser.execute_script(
            "var i = document.querySelector(arguments[0]);"
            "return i && i.complete && i.naturalWidth > 0 ? i.dataset.version : null",
            f"{row} img.preview",
        ),
        lambda shown: shown == version,
        timeout_s=DEADLINE_S,
        what="the jobs page to show the billboard's preview",
    )
    assert text_of(browser, f"{row} .rows") == f"{note['rows_done']}/{BILLBOARD[1]} rows"
    [(_, partial)] = _pixels_in_browser(browser, f"{row} img.preview")
    assert partial.shape == (256, 512, 3)
    shot(browser, "jobs")
    finished = note["preview_rows"]
    assert 0 < finished < 256 and (partial[finished:] == BLANK).all()  # the rest is blank

    second = acme.billboard("another billboard held, then cancelled", seed=5)
    wait_until(
        lambda: acme.job(second)["progress"]["done"],
        lambda done: done >= 2 * 9,
        timeout_s=DEADLINE_S * 3,
        what="the second billboard to be running",
    )
    browser.get(f"{url}/ui/jobs")
    running = f"tr.job[data-job='{second}']"
    assert text_of(browser, f"{running} .status") == "running"
    click_and_load(browser, f"{running} button.cancel")
    wait_until(
        lambda: text_of(browser, f"{running} .status"),
        lambda status: status == "cancelled",
        timeout_s=DEADLINE_S,
        what=f"running large render {second} to show cancelled",
    )

    assert acme.http.get(f"/v1/runs/{second}").json()["status"] == "cancelled"
    wait_until(  # the render itself stopped, before the held tiles may go on
        lambda: (root / "spool" / f"{second}.stopped").exists(),
        timeout_s=DEADLINE_S,
        what=f"large render {second} to stop",
    )
    hold.unlink()  # the first billboard goes on, its preview with it
    wait_until(
        lambda: text_of(browser, f"{row} .rows"),
        lambda rows: rows == f"{BILLBOARD[1]}/{BILLBOARD[1]} rows",
        timeout_s=DEADLINE_S * 3,
        what="the billboard's preview to fill",
    )
    assert text_of(browser, f"{row} .status") == "done"
    result = acme.job(billboard)["result"]
    final = _stored_image(root, result["image"])
    expected = RowPreview(*BILLBOARD)
    expected.add(0, final)
    assert np.abs(partial[:finished] - expected.image()[:finished].astype(np.int16)).max() <= 1
    [(_, full)] = _pixels_in_browser(browser, f"{row} img.preview")
    assert np.abs(full - expected.image().astype(np.int16)).max() <= 1
    assert acme.job(second)["status"] == "cancelled"
    assert not (root / "store" / "renders" / second).exists()  # nothing half-written
    return billboard


def _deep_zoom(browser, url: str, run_id: str, root: Path) -> None:
    """The billboard's run page zooms to full resolution: the deepest tiles in view are
    crops of the artifact, and the full-size file is never sent."""
    browser.get(f"{url}/ui/runs/{run_id}")
    browser.find_element(By.ID, "zoom-open").click()
    deepest = 12  # ceil(log2(4096))
    wait_until(
        lambda: _level(browser),
        timeout_s=DEADLINE_S * 3,  # the first view cuts the pyramid
        what="the billboard's pyramid",
    )
    fitted = _wait_for_tiles(browser, int(_level(browser)))
    assert fitted and int(_level(browser)) < deepest
    shot(browser, "run-zoom")
    browser.execute_script(WHEEL_JS, 3)  # three notches of the wheel: 1.25 ** 3 closer
    assert int(_level(browser)) == deepest
    browser.find_element(By.ID, "dz-fit").click()
    assert int(_level(browser)) < deepest
    while int(_level(browser)) < deepest:
        browser.find_element(By.ID, "dz-in").click()
    _wait_for_tiles(browser, deepest)
    browser.find_element(By.ID, "dz-full").click()  # one screen pixel per picture pixel
    tiles = _wait_for_tiles(browser, deepest)
    cols, rows = -(-BILLBOARD[0] // 256), -(-BILLBOARD[1] // 256)
    assert 0 < len(tiles) < cols * rows // 4  # only what is in view
    final = _stored_image(root, f"renders/{run_id}/image.png")
    compared = _pixels_in_browser(browser, f"img.dz-tile[data-level='{deepest}']", most=4)
    assert compared
    for data, tile in compared:
        col, row = int(data["col"]), int(data["row"])
        crop = final[row * 256 : (row + 1) * 256, col * 256 : (col + 1) * 256].astype(np.int16)
        assert tile.shape == crop.shape == (256, 256, 3)
        assert np.abs(tile - crop).mean() < 6, (col, row)  # full-res pixels, JPEG's loss only
        half = np.asarray(
            Image.fromarray(final[row * 256 : row * 256 + 512, col * 256 : col * 256 + 512]).reduce(
                2
            )
        )
        assert np.abs(tile - half.astype(np.int16)).mean() > 15  # not a coarser level
    drag = ActionChains(browser).click_and_hold(browser.find_element(By.ID, "dz-view"))
    drag.move_by_offset(-300, -120).release().perform()
    _wait_for_tiles(browser, deepest)  # panned: the tiles now in view load
    shot(browser, "run-zoom-deep")
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert not [name for name in fetched if "/v1/artifacts" in name or name.endswith(".png")]


def _level(browser) -> str:
    return browser.find_element(By.ID, "dz").get_attribute("data-level")


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
    assert "No experiments yet" in text_of(browser, "#no-experiments")
    shot(browser, "experiments")


def _on_a_tablet(browser, url: str, paths: list[str]) -> None:
    """At a tablet's 820 px no page scrolls sideways (the zoom viewer open, too)."""
    browser.set_window_size(820, 1180)
    try:
        browser.get(f"{url}/ui/runs")
        shot(browser, "runs-tablet")
        for path in ["/ui/runs", "/ui/experiments", *paths]:
            browser.get(url + path)
            if browser.find_elements(By.ID, "zoom-open"):
                browser.find_element(By.ID, "zoom-open").click()
                wait_until(lambda: _level(browser), timeout_s=DEADLINE_S, what="the zoom")
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= 820, f"{path} scrolls sideways on a tablet ({width} px)"
            if path.startswith("/ui/jobs"):
                shot(browser, "jobs-tablet")
    finally:
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
