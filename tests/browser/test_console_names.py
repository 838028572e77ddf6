"""Names as they are stored, in headless Chromium against the real API on ClickHouse 18.16 (a weigh worker
on the real broker computes the feed): a 250-character instance name is cut with its full text in a
tooltip and leaves Drain/Pin on screen; an operator drains it from the console (by exact name); markup
in a name stays text; a hijacked address is listed as "observed, not routable"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.main import create_app
from api.queries import registry as reg
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import Tansu
from tests.browser.test_console import _use_token, click, severe_logs, wait_for
from tests.integration.helpers import wait_for as feed_served
from tests.integration.weights_helpers import insert_rpc, register, rpc_event, serve, token, weigh_worker, write_users

pytestmark = [pytest.mark.browser, pytest.mark.services]

SERVICE = "shop.cart"
LONG = "10.66.0.1:" + "7" * 240  # 250 characters, stored before names were validated
MARKUP = "<img src=x onerror=alert(1)>"
GOOD = ["10.20.0.1:8080", "10.20.0.2:8080"]
HIJACK = "203.0.113.66:443"


@pytest.fixture
def base(tmp_path: Path, broker: Tansu, ch_store: Store) -> Iterator[str]:
    register(ch_store, SERVICE, GOOD)
    stamp = {"source": "api", "deleted": 0, "changed_ms": reg.stamp_ms(), "changed_by": "before-the-fix"}
    reg.write_instances(ch_store, [{"service": SERVICE, "instance": name, "static_weight": 100, "version": "",
                                    "enabled": 1, **stamp} for name in (LONG, MARKUP)])
    insert_rpc(ch_store, [rpc_event(SERVICE, i) for i in (*GOOD, LONG, MARKUP, HIJACK) for _ in range(20)])
    settings = Settings(users_file=str(write_users(tmp_path / "users.json")), feed_open=True, weights_interval_s=0.5,
                        kafka_bootstrap=broker.bootstrap)
    with weigh_worker(settings, ch_store), serve(create_app(settings, store=ch_store)) as url:
        # the page loads once the worker published the feed (a 404 before it would be a console error)
        feed_served(lambda: httpx.get(f"{url}/v1/weights/{SERVICE}", timeout=10).status_code == 200, 30,
                    "the weigh worker's first feed")
        yield url


def box(driver: Any, element: Any) -> dict[str, float]:
    return driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return {left: r.left, right: r.right, width: r.width, vw: window.innerWidth};",
                                 element)


def test_a_250_character_name_is_cut_with_a_tooltip_and_can_be_drained(chrome: Any, base: str,
                                                                       artifacts: Path) -> None:
    chrome.get(f"{base}/#/service/{SERVICE}")
    row = wait_for(chrome, f"tr[data-instance='{LONG}']")[0]
    label = row.find_element(By.CSS_SELECTOR, "span.name")
    assert label.get_attribute("title") == LONG and label.text.startswith("10.66.0.1:777")
    assert box(chrome, label)["width"] <= 260, "the name is cut to its column"
    for action in ("drain", "pin"):
        button = box(chrome, row.find_element(By.CSS_SELECTOR, f"button[data-action={action}]"))
        assert button["left"] >= 0 and button["right"] <= button["vw"], (action, button)
    chrome.save_screenshot(str(artifacts / "console-long-name.png"))

    marked = wait_for(chrome, f"tr[data-instance='{MARKUP}'] span.name")[0]
    assert marked.text == MARKUP, "markup in a name is shown as text"
    assert chrome.find_elements(By.CSS_SELECTOR, "main img") == []

    observed = wait_for(chrome, f"tr[data-observed='{HIJACK}']")[0]
    assert "observed, not routable" in observed.text and "no discovery policy" in observed.text
    assert chrome.find_elements(By.CSS_SELECTOR, f"tr[data-instance='{HIJACK}']") == [], "not in the weights"

    _use_token(chrome, token("olga"))
    chrome.find_element(By.CSS_SELECTOR, "input[name=why]").send_keys("junk name from before the fix")
    click(chrome, f"tr[data-instance='{LONG}'] button[data-action=drain]")
    wait_for(chrome, f"tr[data-instance='{LONG}'][data-state=drained]", timeout=30)
    feed = httpx.get(f"{base}/v1/weights/{SERVICE}", timeout=10).json()
    assert {i["instance"]: i["weight"] for i in feed["instances"]}[LONG] == 0
    WebDriverWait(chrome, 10).until(lambda d: not severe_logs(d) or pytest.fail(str(severe_logs(d))))
