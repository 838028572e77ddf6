"""The real API over demo data that went through the real pipeline, for the dashboard and console tests.

A backfill of the demo fleet's events over the last `minutes` (so charts have history) plus the live
DemoFleet (so the weight loop sees recent calls), produced to a real broker, loaded by the real
Loader into the given store, and served by uvicorn on a free port with users of each role.
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
from pipeline import events
from pipeline.store import Store
from svcpulse.demo import FLEET, DemoFleet, load_event, rpc_events, tcp_event
from svcpulse.services import Tansu
from svcpulse.settings import Settings
from tests.integration.helpers import LoaderThread, count, produce, wait_for
from tests.integration.weights_helpers import auth, serve, write_users

CALLS_PER_MINUTE = 90
SICK = "127.0.0.13:8080"  # the demo fleet's degraded shop.checkout instance


@dataclass(frozen=True)
class DemoApi:
    base: str
    store: Store
    viewer: dict[str, str]  # Authorization headers
    operator: dict[str, str]
    operator_token: str


def backfill(now_ms: int, minutes: int, seed: int = 11) -> list[tuple[str, events.Event]]:
    """The demo fleet's calls, connections and load samples spread over the last `minutes`."""
    rng = random.Random(seed)
    produced: list[tuple[str, events.Event]] = []
    for minute in range(minutes, 0, -1):
        start = now_ms - minute * 60_000
        for i in range(CALLS_PER_MINUTE):
            ts = start + i * 60_000 // CALLS_PER_MINUTE
            instance = rng.choice(FLEET)
            produced += [("rpc", e) for e in rpc_events(instance, rng, ts, "demo-node")]
            if rng.random() < 0.25:
                produced.append(("tcp", tcp_event(instance, rng, ts, "demo-node")))
        per_instance = CALLS_PER_MINUTE / 60 / len(FLEET)
        produced += [("load", load_event(i, rng, start + s * 1000, "demo-node", per_instance))
                     for i in FLEET for s in (0, 30)]
    return produced


@contextmanager
def demo_api(tmp_path: Path, broker: Tansu, store: Store, minutes: int = 20,
             feed_open: bool = False) -> Iterator[DemoApi]:
    """Load the backfill, keep the live demo fleet running, serve the API; stop it all afterwards.
    feed_open: reads need no token (as in `svcpulse up`); writes still need an operator."""
    rows_before = count(store, "rpc_calls")
    history = backfill(int(time.time() * 1000), minutes)
    expected = rows_before + sum(kind == "rpc" for kind, _ in history)
    fleet = DemoFleet(broker.bootstrap, calls_per_s=30)
    fleet_thread = threading.Thread(target=fleet.run, name="demo-fleet", daemon=True)
    settings = Settings(users_file=str(write_users(tmp_path / "users.json")), weights_interval_s=1.0,
                        feed_open=feed_open)
    with LoaderThread(broker.bootstrap, store, group_id=f"demo-{tmp_path.name}"):
        produce(broker.bootstrap, history)
        fleet_thread.start()
        try:
            wait_for(lambda: count(store, "rpc_calls") >= expected, 120, "the backfill in rpc_calls")
            with serve(create_app(settings, store=store)) as base:
                _wait_for_feeds(base)
                yield DemoApi(base, store, auth("vic"), auth("olga"), "token-of-olga")
        finally:
            fleet.stop()
            fleet_thread.join(timeout=30)


def _wait_for_feeds(base: str) -> None:
    def both_services() -> bool:
        answer = httpx.get(f"{base}/v1/weights", headers=auth("vic"), timeout=10)
        return answer.status_code == 200 and {"shop.checkout", "shop.catalog"} <= {
            f["service"] for f in answer.json()["services"]}
    wait_for(both_services, 60, "weight feeds of both demo services")
