"""Headless Debian Chromium driven by selenium through /usr/bin/chromedriver, with the browser's console
log readable; screenshots go to artifacts/ at the repository root."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.store import Store
from svcpulse.services import Tansu
from tests.integration.demo_api import DemoApi, demo_api

ARTIFACTS = Path(__file__).parents[2] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1500,1100", "--disable-dev-shm-usage")


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("Debian chromium and chromium-driver are required in CI (apt-get install chromium "
                        "chromium-driver)")
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def demo(tmp_path: Path, broker: Tansu, ch_store: Store) -> Iterator[DemoApi]:
    """The demo fleet's data through the real broker, loader and weigh worker, served by the real API;
    reads need no token (as in `svcpulse up`)."""
    with demo_api(tmp_path, broker, ch_store, feed_open=True) as api:
        yield api
