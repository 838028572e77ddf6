"""The web console in headless Chromium against the real API (uvicorn) over demo data that went through
the real broker and loader into ClickHouse 18.16: pages load without console errors, charts draw the
data (the uPlot charts hold the API's series), and an operator drains an instance from the UI and the
weight feed shows it."""

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


CHART = """const chart = CHARTS.get(arguments[0]);
if (!chart || !chart.figure.isConnected) return null;
const u = chart.plot;
return {data: u.data, labels: u.series.slice(1).map((s) => s.label), scale: [u.scales.x.min, u.scales.x.max],
        strokes: u.series.slice(1).map((s, i) => (typeof s.stroke === "function" ? s.stroke(u, i + 1) : s.stroke)),
        cursor: {idx: u.cursor.idx, left: u.cursor.left}, width: u.bbox.width / devicePixelRatio,
        drawn: chart.figure.querySelectorAll("canvas").length};"""


def chart(driver: Any, key: str, timeout: float = 20) -> dict[str, Any]:
    """What the page's uPlot chart `key` (charts.js) holds: its data arrays (x = epoch ms), series labels,
    line colours, x scale and cursor; waits until the chart is on the page."""
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(CHART, key), f"chart {key}")
    return driver.execute_script(CHART, key)


def drawn_points(shown: dict[str, Any]) -> dict[tuple[str, int], float]:
    """A chart's points as {(series label, t_ms): value}, leaving out the gaps (null)."""
    times = shown["data"][0]
    return {(label, times[i]): value for label, values in zip(shown["labels"], shown["data"][1:], strict=True)
            for i, value in enumerate(values) if value is not None}


def assert_same_points(drawn: dict[tuple[str, int], float], api: dict[tuple[str, int], float]) -> None:
    """The chart shows the API's points, up to the chart's last two minutes: the demo's live traffic still
    fills those while the test reads (and the API may answer a minute later than the page asked)."""
    cutoff = max(t for (_, t) in drawn) - 60_000
    older = {key: value for key, value in drawn.items() if key[1] < cutoff}
    assert older and older == pytest.approx({key: value for key, value in api.items() if key[1] < cutoff})


def api_points(base: str, path: str) -> dict[tuple[str, int], float]:
    """The same from the API's /v1/series answer (labels joined as the console joins them)."""
    answer = httpx.get(f"{base}{path}", timeout=10).json()
    return {(" ".join(s["labels"].values()) or "all", t): v for s in answer["series"] for t, v in s["points"]}


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
    for metric, key in (("rps", "rps"), ("success_rate", "success"), ("latency_p99", "p99")):
        shown = chart(chrome, f"{SERVICE}/{key}")
        assert shown["drawn"] >= 1 and len(shown["labels"]) == 3, (key, shown["labels"])  # one line per instance
        drawn = drawn_points(shown)
        assert len(drawn) >= 30, (key, len(drawn))  # 20 minutes of backfill, 1-minute steps, 3 instances
        api = api_points(demo.base, f"/v1/series?metric={metric}&service={SERVICE}&by=instance")
        assert_same_points(drawn, api)
    assert chrome.find_element(By.CSS_SELECTOR, "p.recommend").text.split(" ")[0] in ("keep", "scale")
    # Callers' connections to each instance (tcp events of the demo data): figures and two charts
    conns = wait_for(chrome, "tr[data-connections]", 3)
    assert {r.get_attribute("data-connections") for r in conns} == {"127.0.0.11:8080", "127.0.0.12:8080", SICK}
    ok_rate = chart(chrome, f"{SERVICE}/conn-ok")
    health = httpx.get(f"{demo.base}/v1/services/{SERVICE}/connections", timeout=10).json()
    ok_api = {(i["instance"], p["t_ms"]): p["ok_rate"] for i in health["instances"] for p in i["series"]
              if p["ok_rate"] is not None}
    assert_same_points(drawn_points(ok_rate), ok_api)
    assert set(ok_rate["labels"]) == {"127.0.0.11:8080", "127.0.0.12:8080", SICK}
    no_rendering_slips(chrome)
    chrome.save_screenshot(str(artifacts / "console-service.png"))
    assert severe_logs(chrome) == []

    # Lifetime counts only grow while the demo's live traffic goes on: the page's lie between the API's
    # answers before the page was opened and after it was read.
    def lifetimes() -> list[int]:
        return [b["count"] for b in httpx.get(f"{demo.base}/v1/connections/lifetimes", timeout=10).json()["buckets"]]
    before = lifetimes()
    chrome.get(f"{demo.base}/#/connections")
    new = chart(chrome, "connections/new")
    counts = chart(chrome, "connections/lifetimes")["data"][1]
    after = lifetimes()
    assert all(low <= count <= high for low, count, high in zip(before, counts, after, strict=True)) and sum(counts) > 0
    assert new["drawn"] >= 1
    assert_same_points(drawn_points(new), api_points(demo.base, "/v1/connections/series?metric=connections&by=remote"))
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
