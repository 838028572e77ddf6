"""The real API over demo-shaped data that went through the real pipeline (dashboard and console tests).

A backfill over the last `minutes` (so charts have history) plus live calls (so the weight loop sees
recent traffic), produced to a real broker, loaded by the real Loader into the given store, and
served by uvicorn on a free port with users of each role (tests/integration/weights_helpers.py).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.main import create_app
from api.queries.discovery import write_policy
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import Tansu
from tests.integration.demo_events import FLEET, backfill, call, loads
from tests.integration.helpers import LoaderThread, count, produce, wait_for
from tests.integration.weights_helpers import auth, serve, weigh_worker, write_users

LIVE_CALLS_PER_S = 20


@dataclass(frozen=True)
class DemoApi:
    base: str
    store: Store
    viewer: dict[str, str]  # Authorization headers
    operator: dict[str, str]
    operator_token: str


def _live(bootstrap: str, stop: threading.Event) -> None:
    """Calls happening now, half a second at a time, with a load sample every 5 s."""
    rng = random.Random(3)
    beat = 0
    while not stop.wait(0.5):
        now_ms = int(time.time() * 1000)
        batch = [e for _ in range(LIVE_CALLS_PER_S // 2) for e in call(rng, now_ms)]
        produce(bootstrap, batch + (loads(rng, now_ms, LIVE_CALLS_PER_S) if beat % 10 == 0 else []))
        beat += 1


@contextmanager
def demo_api(tmp_path: Path, broker: Tansu, store: Store, minutes: int = 20,
             feed_open: bool = False) -> Iterator[DemoApi]:
    """Load the backfill, keep live calls coming, serve the API; stop it all afterwards.
    feed_open: reads need no token (as in `svcpulse up`); writes still need an operator."""
    rows_before = count(store, "rpc_calls")
    history = backfill(int(time.time() * 1000), minutes)
    expected = rows_before + sum(kind == "rpc" for kind, _ in history)
    stop = threading.Event()
    live = threading.Thread(target=_live, args=(broker.bootstrap, stop), name="demo-live", daemon=True)
    settings = Settings(users_file=str(write_users(tmp_path / "users.json")), weights_interval_s=1.0,
                        feed_open=feed_open, kafka_bootstrap=broker.bootstrap)
    for service in {i.service for i in FLEET}:  # telemetry alone routes nothing: admit the demo's loopback fleet
        write_policy(store, service, ["127.0.0.0/8"], why="demo fleet")
    with LoaderThread(broker.bootstrap, store, group_id=f"demo-{tmp_path.name}"), weigh_worker(settings, store):
        produce(broker.bootstrap, history)
        live.start()
        try:
            wait_for(lambda: count(store, "rpc_calls") >= expected, 120, "the backfill in rpc_calls")
            with serve(create_app(settings, store=store)) as base:
                _wait_for_feeds(base)
                yield DemoApi(base, store, auth("vic"), auth("olga"), "token-of-olga")
        finally:
            stop.set()
            live.join(timeout=30)


def _wait_for_feeds(base: str) -> None:
    def both_services() -> bool:
        answer = httpx.get(f"{base}/v1/weights", headers=auth("vic"), timeout=10)
        return answer.status_code == 200 and {"shop.checkout", "shop.catalog"} <= {
            f["service"] for f in answer.json()["services"]}
    wait_for(both_services, 60, "weight feeds of both demo services")
