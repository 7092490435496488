"""Headless Debian Chromium for the browser tests (Selenium and Debian's chromedriver).

No browser is ever downloaded: `make test` installs `chromium` and `chromium-driver`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
DEADLINE_S = 20.0


def skip_without_chromium() -> None:
    """Skip the calling test module when Selenium or Debian's Chromium is missing."""
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (make test installs them)",
            allow_module_level=True,
        )


@contextmanager
def chromium_driver() -> Iterator:
    """A headless Chromium at 1280 px wide, every wait of its own bounded."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(DEADLINE_S)
    driver.set_script_timeout(DEADLINE_S)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver, css: str) -> str:
    """The text of the first element at `css` (failing with the page's text when none)."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    assert found, (
        f"no {css} on {driver.current_url}: {driver.find_element(By.TAG_NAME, 'body').text}"
    )
    return found[0].text


def click_and_load(driver, css: str) -> None:
    """Click what submits a form or follows a link, and wait for the next page."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By

    old = driver.find_element(By.TAG_NAME, "html")
    try:
        driver.find_element(By.CSS_SELECTOR, css).click()
    except WebDriverException as exc:  # seen under load: the click never reached the page
        if "does not belong to the document" not in str(exc):
            raise
        driver.find_element(By.CSS_SELECTOR, css).click()

    def gone() -> bool:
        try:
            old.tag_name  # noqa: B018 - raises once the page has been replaced
        except StaleElementReferenceException:
            return driver.execute_script("return document.readyState") == "complete"
        except WebDriverException as exc:  # mid-navigation chromedriver says "gone" this way
            if "does not belong to the document" not in str(exc):
                raise
            return driver.execute_script("return document.readyState") == "complete"
        return False

    wait_until(gone, timeout_s=DEADLINE_S, what=f"the page after clicking {css}")
