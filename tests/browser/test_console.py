"""The web console in headless Chromium against the real API (uvicorn) over demo data that went through
the real broker and loader into ClickHouse 18.16: pages load without console errors, charts draw the
data, and an operator drains an instance from the UI and the weight feed shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import (
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.demo_api import DemoApi
from tests.integration.demo_events import SICK

pytestmark = [pytest.mark.browser, pytest.mark.services]

SERVICE = "shop.checkout"


def severe_logs(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(driver: Any, css: str, minimum: int = 1, timeout: float = 20) -> list[Any]:
    WebDriverWait(driver, timeout).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= minimum,
                                         f"{minimum} x {css}")
    return driver.find_elements(By.CSS_SELECTOR, css)


def no_rendering_slips(driver: Any) -> None:
    """Values the console failed to format would show up as text like these."""
    text = driver.find_element(By.TAG_NAME, "main").text
    assert not [slip for slip in ("[object", "undefined", "NaN", "null") if slip in text], text


def drawn_series(driver: Any, chart_title: str) -> list[int]:
    """Points per line of one chart (its <path class=series data-points=N>), checking each path has a shape."""
    figure = driver.find_element(By.CSS_SELECTOR, f"svg[aria-label='{chart_title}']")
    paths = figure.find_elements(By.CSS_SELECTOR, "path.series")
    assert all(p.get_attribute("d").count("L") >= 1 for p in paths), chart_title
    return [int(p.get_attribute("data-points")) for p in paths]


def test_pages_load_without_errors_and_charts_draw_the_data(chrome: Any, demo: DemoApi, artifacts: Path) -> None:
    chrome.get(f"{demo.base}/")
    rows = wait_for(chrome, "tr[data-service]", 2)
    assert {r.get_attribute("data-service") for r in rows} >= {"shop.checkout", "shop.catalog"}
    assert "healthy" in chrome.page_source or "warning" in chrome.page_source
    no_rendering_slips(chrome)
    chrome.save_screenshot(str(artifacts / "console-services.png"))
    assert severe_logs(chrome) == []

    chrome.get(f"{demo.base}/#/service/{SERVICE}")
    wait_for(chrome, "tr[data-instance]", 3)
    wait_for(chrome, "path.series", 9)  # three charts, one line per instance
    for title in ("Requests / s by instance", "Success rate by instance", "Latency p99 by instance"):
        points = drawn_series(chrome, title)
        assert len(points) == 3 and min(points) >= 10, (title, points)  # 20 minutes of backfill, 1-minute steps
    assert chrome.find_element(By.CSS_SELECTOR, "p.recommend").text.split(" ")[0] in ("keep", "scale")
    # Callers' connections to each instance (tcp events of the demo data): figures and two charts
    conns = wait_for(chrome, "tr[data-connections]", 3)
    assert {r.get_attribute("data-connections") for r in conns} == {"127.0.0.11:8080", "127.0.0.12:8080", SICK}
    assert len(drawn_series(chrome, "Connections ok by instance")) == 3
    no_rendering_slips(chrome)
    chrome.save_screenshot(str(artifacts / "console-service.png"))
    assert severe_logs(chrome) == []

    chrome.get(f"{demo.base}/#/connections")
    wait_for(chrome, "path.series", 1)
    bars = wait_for(chrome, "rect.column", 5)
    assert sum(float(b.get_attribute("data-value")) for b in bars) > 0
    no_rendering_slips(chrome)
    chrome.save_screenshot(str(artifacts / "console-connections.png"))

    chrome.get(f"{demo.base}/#/alarms")
    wait_for(chrome, "h1")
    chrome.save_screenshot(str(artifacts / "console-alarms.png"))
    assert severe_logs(chrome) == []


def renders(driver: Any) -> int:
    return int(driver.find_element(By.ID, "main").get_attribute("data-renders") or 0)


def _use_token(driver: Any, token: str) -> None:
    """Enter a token in the header and wait for the page drawn with it (the old DOM goes stale)."""
    before = renders(driver)
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    WebDriverWait(driver, 20).until(lambda d: renders(d) > before, "the page drawn with the new token")


def click(driver: Any, css: str) -> None:
    """Click what `css` finds, again if the 10-second refresh redrew the page in between."""
    def clicked(d: Any) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return True
        except (StaleElementReferenceException, ElementNotInteractableException, NoSuchElementException):
            return False
    WebDriverWait(driver, 20).until(clicked, f"a click on {css}")


def test_operator_drains_an_instance_and_the_feed_shows_it(chrome: Any, demo: DemoApi, artifacts: Path) -> None:
    chrome.get(f"{demo.base}/#/service/{SERVICE}")
    wait_for(chrome, f"tr[data-instance='{SICK}']")
    _use_token(chrome, "token-of-vic")  # a viewer: the API refuses, the console says why
    chrome.find_element(By.CSS_SELECTOR, "input[name=why]").send_keys("disk swap on node 13")
    click(chrome, f"tr[data-instance='{SICK}'] button[data-action=drain]")
    refusal = wait_for(chrome, "#toast div.bad")[0].text
    assert "403" in refusal and "operator" in refusal

    _use_token(chrome, demo.operator_token)
    assert chrome.execute_script("return sessionStorage.getItem('svcpulse.token')") == demo.operator_token
    click(chrome, f"tr[data-instance='{SICK}'] button[data-action=drain]")
    wait_for(chrome, f"tr[data-instance='{SICK}'][data-state=drained]", timeout=30)
    chrome.save_screenshot(str(artifacts / "console-drained.png"))

    feed = httpx.get(f"{demo.base}/v1/weights/{SERVICE}", timeout=10).json()
    drained = {i["instance"]: i for i in feed["instances"]}[SICK]
    assert drained["state"] == "drained" and drained["weight"] == 0
    audit = httpx.get(f"{demo.base}/v1/audit?service={SERVICE}", timeout=10).json()
    assert audit[0]["action"] == "override.drain" and audit[0]["user"] == "olga"
    assert audit[0]["why"] == "disk swap on node 13"
