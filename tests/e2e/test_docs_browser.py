"""`/api/docs` in a real browser with no network: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, installed by ``make install``) driven through Selenium against the local API over a
real database and cache.

Chromium may reach 127.0.0.1 only: every other host resolves to nothing and any proxied request goes to
a closed port, so a page that needs a CDN renders blank here, as it would offline. The test clicks what a
person clicks — "Authorize" with the admin token, then "Try it out" → "Execute" on a public and an
admin route — and reads the response panel the page renders. A full-page screenshot goes to the test's
``tmp_path`` whether the test passes or not, with one of each executed operation (the folder is printed;
``pytest -s`` shows it).

``make test`` sets ``REQUIRE_BROWSER=1``: there a missing browser fails the test. Run alone without
Chromium installed, it is skipped with the reason.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.api import LocalApi
from local.docs import DOCS_PATH
from local.invoker import Invoker
from local.template import Template
from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"
WAIT_SECONDS = 60  # a 2-core machine shared with the rest of the suite renders the whole document slowly


def _missing_browser(reason: str) -> None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; `make install` adds it (REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(f"{reason}; `make install` adds it (under make test this fails instead)")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium that can reach loopback addresses only, recording every request it makes."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing_browser("selenium is not installed")
    chromium, chromedriver = shutil.which(CHROMIUM), shutil.which(CHROMEDRIVER)
    if chromium is None or chromedriver is None:
        _missing_browser("Debian's chromium or chromium-driver is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the suite runs as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,2400",  # tall enough that an executed operation fits its screenshot
        # No network beyond this machine: names other than localhost resolve to nothing, and what would
        # go through a proxy goes to a closed loopback port (loopback itself bypasses the proxy).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        # Chromium's own background traffic (updates, sync, safe browsing) stays off too.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # An explicit driver path: Selenium never looks for (or downloads) a driver of its own.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(chromedriver)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def docs_api(lambda_env: dict[str, str]) -> Iterator[LocalApi]:
    """The local API as ``make dev`` serves it (docs on), over this test's database and cache."""
    template = Template.load(ROOT / "template.yaml")
    with LocalApi(template, Invoker(template), port=0, quiet=True, docs=True) as api:
        yield api


def _requested_urls(driver: Any) -> list[str]:
    """What the page asked the network for (inline ``data:`` images are not requests)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith("data:"):
                urls.append(url)
    return urls


def _screenshot(driver: Any, path: Path) -> None:
    # The whole page, not just the window: both executed operations are far below the fold.
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))
    # The folder is for the person running the test to look at (pytest -s), so it is printed.
    print(f"screenshots of {DOCS_PATH} (the page, each executed operation): {path.parent}")  # noqa: T201


def _execute(driver: Any, operation_id: str, output: Path) -> tuple[str, str, str]:
    """Open an operation, "Try it out" → "Execute"; the rendered status, response body and curl line.

    The operation's block, as rendered, is saved to ``output/<operation_id>.png``.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_SECONDS)
    block = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"[id$='-{operation_id}']")))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", block)
    block.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    # tryItOutEnabled opens the editor already; press "Try it out" only when the button offers it.
    try_out = wait.until(lambda _: block.find_element(By.CSS_SELECTOR, ".try-out__btn"))
    if "cancel" not in try_out.get_attribute("class"):
        try_out.click()
    wait.until(lambda _: block.find_element(By.CSS_SELECTOR, "button.execute")).click()
    status = wait.until(
        lambda _: block.find_element(By.CSS_SELECTOR, ".live-responses-table .response .response-col_status")
    )
    body = block.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre")
    curl = block.find_element(By.CSS_SELECTOR, ".curl-command")
    block.screenshot(str(output / f"{operation_id}.png"))
    return status.text.strip(), body.text, curl.text


# Some 20 s alone; a loaded 2-core machine may take several of the 60 s waits' worth, so more than the suite's 120 s.
@pytest.mark.timeout(300)
def test_docs_page_works_offline_authorizes_and_runs_public_and_admin_routes(browser, docs_api, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_SECONDS)
    requested: list[str] = []
    try:
        # Given the docs page opened in a browser that can reach this machine only
        browser.get(docs_api.url + DOCS_PATH)
        try:
            title = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".information-container .title")))
        except TimeoutException:
            requested += _requested_urls(browser)
            pytest.fail(f"Swagger UI did not render (a blank page); the page asked for {requested}")
        assert "such-market API" in title.text
        assert browser.execute_script("return window.versions.swaggerUI.version").startswith("5.")

        # When the admin token is entered in the "Authorize" dialog
        browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
        dialog = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
        dialog.find_element(By.CSS_SELECTOR, "input").send_keys(ADMIN_TOKEN)
        dialog.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .authorize").click()
        # Authorized: the dialog now offers "Logout" in place of "Authorize"
        wait.until(lambda _: dialog.find_element(By.XPATH, ".//button[normalize-space()='Logout']"))
        dialog.find_element(By.CSS_SELECTOR, ".btn-done").click()
        wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

        # and "Try it out" → "Execute" runs on a public route and on an admin route
        health = _execute(browser, "get_health", tmp_path)
        stats = _execute(browser, "get_ownership_stats", tmp_path)
    finally:
        _screenshot(browser, tmp_path / "api-docs.png")
        requested += _requested_urls(browser)

    # Then the page renders each answer: the public route's health report
    status, body, curl = health
    assert status == "200", body
    assert json.loads(body)["database"]["status"] == "ok"
    assert "Authorization" not in curl
    # and the admin route's statistics, sent with the bearer token from the dialog
    status, body, curl = stats
    assert status == "200", body
    assert "totalOwnershipRecords" in json.loads(body)
    assert f"Authorization: Bearer {ADMIN_TOKEN}" in curl
    # and everything the page loaded came from the local API: nothing from a CDN or any other host
    assert docs_api.url + DOCS_PATH in requested
    assert [url for url in requested if not url.startswith(docs_api.url + "/")] == []
    # and that is because it had to be: from this browser, any other host is unreachable (no-cors, so
    # only a network failure rejects; the request goes to the closed proxy port, never out)
    probe = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('https://example.com/', {mode: 'no-cors'}).then(() => done('reached'), (e) => done(e.name));"
    )
    assert probe == "TypeError"
