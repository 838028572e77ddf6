"""The console's service map in headless Chromium over the demo fleet's data (real broker, loader, weigh
worker, ClickHouse 18.16 and API): the nodes, edges and colours drawn are the ones GET /v1/map answers,
the sick checkout instance makes checkout degraded with a red edge from the frontend (issue 17's demo
map), and a click on a service opens its page. The screenshot (artifacts/console-map.png) is
the one docs/console.md shows, copied by hand."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_console import click, no_rendering_slips, severe_logs, wait_for
from tests.integration.demo_api import DemoApi
from tests.integration.demo_events import SICK
from tests.integration.helpers import wait_for as wait_until

pytestmark = [pytest.mark.browser, pytest.mark.services]

FRONTEND, CHECKOUT, CATALOG = "svc:shop.frontend", "svc:shop.checkout", "svc:shop.catalog"
RED, ORANGE = "#f2495c", "#ff9830"


def the_map(base: str) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return httpx.get(f"{base}/v1/map", params={"from": now_ms - 15 * 60_000, "limit": 60}, timeout=30).json()


def checkout_degraded(base: str) -> bool:
    feed = httpx.get(f"{base}/v1/weights/shop.checkout", timeout=10).json()
    return {i["instance"]: i["state"] for i in feed.get("instances", [])}.get(SICK) in ("degraded", "ejected")


def test_the_map_draws_the_api_graph_and_opens_a_service(chrome: Any, demo: DemoApi, artifacts: Path) -> None:
    wait_until(lambda: checkout_degraded(demo.base), 60, "the weigh worker judging the sick checkout instance")
    answer = the_map(demo.base)
    edges = {(e["source"], e["target"]): e for e in answer["edges"]}
    assert {(FRONTEND, CHECKOUT), (FRONTEND, CATALOG)} == set(edges)  # calls and connections merged per pair
    assert edges[(FRONTEND, CHECKOUT)]["color"] == RED and edges[(FRONTEND, CHECKOUT)]["tcp_attempts"] > 0
    assert SICK in " ".join(edges[(FRONTEND, CHECKOUT)]["why"])
    nodes = {n["id"]: n for n in answer["nodes"]}
    assert set(nodes) == {FRONTEND, CHECKOUT, CATALOG}
    assert (nodes[CHECKOUT]["state"], nodes[CHECKOUT]["color"]) == ("degraded", ORANGE)

    chrome.get(f"{demo.base}/#/map")
    drawn = wait_for(chrome, "g.map-node", 3)
    assert {n.get_attribute("data-id"): n.get_attribute("data-color") for n in drawn} == {
        i: n["color"] for i, n in nodes.items()}
    lines = chrome.find_elements(By.CSS_SELECTOR, "path.map-edge")
    assert {(p.get_attribute("data-source"), p.get_attribute("data-target")): p.get_attribute("stroke")
            for p in lines} == {pair: e["color"] for pair, e in edges.items()}
    frontend_x = chrome.find_element(By.CSS_SELECTOR, f"g.map-node[data-id='{FRONTEND}']").rect["x"]
    assert all(n.rect["x"] > frontend_x for n in drawn if n.get_attribute("data-id") != FRONTEND)  # callers left
    no_rendering_slips(chrome)
    chrome.save_screenshot(str(artifacts / "console-map.png"))  # docs/console-map.png is a copy
    assert severe_logs(chrome) == []

    click(chrome, f"g.map-node[data-id='{CHECKOUT}']")
    WebDriverWait(chrome, 20).until(lambda d: d.current_url.endswith("#/service/shop.checkout"), "the service page")
    wait_for(chrome, f"tr[data-instance='{SICK}']")
