"""The console's charts (charts.js over the vendored uPlot) in headless Chromium against the real API on the
demo data (real broker, loader, ClickHouse 18.16): line colours match the tables, hovering a minute reads
out that minute's API values under the chart, the crosshair follows on the page's other charts, a drag
zooms the time axis of all of them and the zoom (and the same chart objects) survives the 10-second redraw,
a double-click resets it, leaving the page destroys the charts, and the Content-Security-Policy is never violated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_console import SERVICE, api_points, chart, drawn_points, renders, severe_logs, wait_for
from tests.integration.demo_api import DemoApi

pytestmark = [pytest.mark.browser, pytest.mark.services]

RPS = f"{SERVICE}/rps"
GAP = "\u2013"  # what the legend reads out where a series has no point
SYNCED = [f"{SERVICE}/{key}" for key in ("success", "p99", "conn-ok", "handshake-p99")]


def plot_area(driver: Any, key: str) -> Any:
    """The chart's plotting area (uPlot's .u-over, where the pointer events land)."""
    return driver.find_element(By.CSS_SELECTOR, f"figure[data-chart='{key}'] .u-over")


def x_offset(driver: Any, key: str, t_ms: int) -> float:
    """Where time t_ms sits, as an offset from the plotting area's centre (Selenium's pointer origin)."""
    left = driver.execute_script("return CHARTS.get(arguments[0]).plot.valToPos(arguments[1], 'x')", key, t_ms)
    return left - plot_area(driver, key).size["width"] / 2


def read_out(driver: Any, key: str) -> dict[str, str]:
    """The legend under a chart: series label -> the value it shows."""
    rows = driver.find_elements(By.CSS_SELECTOR, f"figure[data-chart='{key}'] .u-legend .u-series")
    return {r.find_element(By.CSS_SELECTOR, ".u-label").text: r.find_element(By.CSS_SELECTOR, ".u-value").text
            for r in rows}


def at_cursor(shown: dict[str, Any]) -> int | None:
    """The time (epoch ms) of the point under a chart's cursor, None when the cursor is off the chart."""
    idx = shown["cursor"]["idx"]
    return None if idx is None else shown["data"][0][idx]


def rgba(hex_colour: str) -> str:
    """#5794f2 as Chromium reports a computed colour: rgba(87, 148, 242, 1)."""
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, 1)"


def hover(driver: Any, key: str, t_ms: int) -> None:
    ActionChains(driver).move_to_element_with_offset(plot_area(driver, key), round(x_offset(driver, key, t_ms)), 0)\
        .perform()


def test_charts_read_out_zoom_keep_their_zoom_and_share_the_crosshair(chrome: Any, demo: DemoApi,
                                                                       artifacts: Path) -> None:
    chrome.get(f"{demo.base}/#/service/{SERVICE}")
    rows = wait_for(chrome, "tr[data-instance]", 3)
    shown = chart(chrome, RPS)
    # Colours: an instance's line is the colour of its swatch in the weights table, in every chart
    swatches = {r.get_attribute("data-instance"): r.find_element(By.CSS_SELECTOR, "i.swatch")
                .value_of_css_property("background-color") for r in rows}
    for key in (RPS, *SYNCED):
        drawn = chart(chrome, key)
        for label, stroke in zip(drawn["labels"], drawn["strokes"], strict=True):
            assert rgba(stroke) == swatches[label], (key, label, stroke, swatches[label])
    assert len(set(swatches.values())) == 3

    # One time axis for the page's charts (the last hour)
    times = shown["data"][0]
    for key in SYNCED:
        other = chart(chrome, key)["data"][0]
        assert other[0] == times[0] and other[-1] == pytest.approx(times[-1], abs=5_000), key
    assert times[-1] - times[0] == pytest.approx(3_600_000, abs=60_000)

    # Hover: the legend reads out the API's values of the minute under the pointer (one that every chart has)
    filled = [{t for (_, t) in drawn_points(chart(chrome, key))} for key in (RPS, *SYNCED)]
    minutes = sorted(set.intersection(*filled))
    minute = minutes[len(minutes) // 2]
    chrome.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot_area(chrome, RPS))
    hover(chrome, RPS, minute)
    WebDriverWait(chrome, 10).until(lambda d: at_cursor(chart(d, RPS)) == minute, "the cursor on that minute")
    api = api_points(demo.base, f"/v1/series?metric=rps&service={SERVICE}&by=instance")
    legend = read_out(chrome, RPS)
    for label in shown["labels"]:
        assert float(legend[label].replace(",", "")) == pytest.approx(api[(label, minute)], abs=0.051), (label, legend)
    assert legend["time"] == chrome.execute_script("return new Date(arguments[0]).toLocaleTimeString()", minute)
    # ... and the other charts of the page show their crosshair and read-out at the same minute
    for key in SYNCED:
        other = chart(chrome, key)
        assert other["cursor"]["left"] >= 0, key
        assert at_cursor(other) == minute, key
        assert all(value != GAP for value in read_out(chrome, key).values()), key
    chrome.save_screenshot(str(artifacts / "console-charts.png"))

    # Drag from a quarter to three quarters of the data: the x scale narrows to that span
    start, end = times[len(times) // 4], times[3 * len(times) // 4]
    ActionChains(chrome).move_to_element_with_offset(plot_area(chrome, RPS), round(x_offset(chrome, RPS, start)), 0)\
        .click_and_hold().move_by_offset(round(x_offset(chrome, RPS, end) - x_offset(chrome, RPS, start)), 0)\
        .release().perform()
    zoomed = chart(chrome, RPS)["scale"]
    assert zoomed[0] == pytest.approx(start, abs=60_000) and zoomed[1] == pytest.approx(end, abs=60_000), zoomed
    assert zoomed[1] - zoomed[0] < 0.7 * (times[-1] - times[0])
    assert [chart(chrome, key)["scale"] for key in SYNCED] == [zoomed] * len(SYNCED)  # the page zooms as one

    # The 10-second redraw keeps the chart (same uPlot object, same element) and its zoom; no chart piles up
    chrome.execute_script("CHARTS.get(arguments[0]).plot.probe = 'kept'", RPS)
    ActionChains(chrome).move_to_element(chrome.find_element(By.CSS_SELECTOR, ".cards")).perform()  # off the chart
    before = renders(chrome)
    WebDriverWait(chrome, 30).until(lambda d: renders(d) > before, "the periodic redraw")
    assert chrome.execute_script("return CHARTS.get(arguments[0]).plot.probe", RPS) == "kept"
    assert [chart(chrome, key)["scale"] for key in (RPS, *SYNCED)] == [zoomed] * (1 + len(SYNCED))
    assert chrome.execute_script("return [document.querySelectorAll('.uplot').length, CHARTS.size]") == [5, 5]

    # A double-click resets the zoom to the whole hour, on every chart of the page
    ActionChains(chrome).double_click(plot_area(chrome, RPS)).perform()
    for key in (RPS, *SYNCED):
        reset = chart(chrome, key)
        assert reset["scale"] == [reset["data"][0][0], reset["data"][0][-1]], key

    # Leaving the page (the same document: a hash change) destroys its charts
    chrome.execute_script("location.hash = '#/alarms'")
    WebDriverWait(chrome, 20).until(lambda d: d.execute_script("return CHARTS.size") == 0, "charts dropped")
    assert severe_logs(chrome) == []  # no Content-Security-Policy violation, no script error
    # ... which the log would show: an inline script is refused and logged
    chrome.execute_script("const s = document.createElement('script'); s.textContent = 'window.inlineRan = 1';"
                          "document.body.append(s)")
    assert chrome.execute_script("return window.inlineRan") is None
    assert any("Content Security Policy" in line for line in severe_logs(chrome))
