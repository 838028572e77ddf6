"""Issue 9 section 1: one contract-valid event must not stop ingestion, on the real broker and stores.

The hostile event (ts_ms 4294967296000, after 2106) is refused by the contract; a row the store itself
refuses is bisected out with the store's message; a loader stuck on an unreachable store reports
not-ready (its own /readyz and the API's) and stops on SIGTERM without committing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.kafka import open_consumer
from core.settings import Settings
from pipeline import events
from pipeline.dlq import read_dead_letters
from pipeline.store import Store
from svcpulse.services import Tansu, free_port
from tests.factories import rpc_event
from tests.integration.helpers import LoaderThread, count, distinct_offsets, produce, wait_for
from tests.integration.weights_helpers import auth, write_users

pytestmark = pytest.mark.services
HOSTILE_TS_MS = 4_294_967_296_000  # the event of issue 9: passes a naive check, overflows DateTime


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return 0  # not listening yet


def _dead_letters(bootstrap: str, expected: int) -> list[events.Event]:
    found: list[events.Event] = []

    def arrived() -> bool:
        found[:] = read_dead_letters(bootstrap, None, idle_s=1.0)
        return len(found) >= expected

    wait_for(arrived, 30, f"{expected} dead letter(s)")
    return found


def test_the_hostile_event_among_100000_good_ones_goes_to_the_dlq_and_the_rest_loads(
        broker: Tansu, ch_store: Store) -> None:
    good = [("rpc", rpc_event(i)) for i in range(100_000)]
    hostile = json.dumps(rpc_event(0, ts_ms=HOSTILE_TS_MS, callee="hostile")).encode()  # the producer's own bytes
    produce(broker.bootstrap, [*good[:50_000], ("rpc", hostile), *good[50_000:]])
    with LoaderThread(broker.bootstrap, ch_store, kafka_client="confluent"):
        wait_for(lambda: count(ch_store, "rpc_calls") == 100_000, 120, "every good row")
        dead = _dead_letters(broker.bootstrap, 1)
    assert len(dead) == 1 and dead[0]["offset"] >= 0
    assert dead[0]["reason"] == "field 'ts_ms': expected 1..4294967295999, got 4294967296000"
    assert json.loads(events.dead_letter_payload(dead[0]))["ts_ms"] == HOSTILE_TS_MS
    assert distinct_offsets(ch_store, "rpc_calls") == 100_000, "a row was stored twice"
    assert count(ch_store, "rpc_calls WHERE callee = 'hostile'") == 0


def test_events_outside_the_plausibility_window_go_to_the_dlq_on_chdb(broker: Tansu, chdb_store: Store) -> None:
    now = int(time.time() * 1000)
    callee = f"window-{now}"  # the embedded store is shared by the session: count this test's rows only
    odd = {"year 2100": rpc_event(1, ts_ms=4_102_444_800_000, callee=callee),
           "two hours ahead": rpc_event(2, ts_ms=now + 7_200_000, callee=callee),
           "a year ago": rpc_event(3, ts_ms=now - 365 * 86_400_000, callee=callee)}
    good = [("rpc", rpc_event(i, ts_ms=now - i, callee=callee)) for i in range(5000)]
    produce(broker.bootstrap, [*good[:2500], *(("rpc", e) for e in odd.values()), *good[2500:]])
    with LoaderThread(broker.bootstrap, chdb_store):
        wait_for(lambda: count(chdb_store, f"rpc_calls WHERE callee = '{callee}'") == 5000, 60, "the good rows")
        dead = _dead_letters(broker.bootstrap, 3)
    assert all("plausibility window" in d["reason"] for d in dead), [d["reason"] for d in dead]
    assert count(chdb_store, f"rpc_calls WHERE callee = '{callee}'") == 5000


def test_rows_the_store_refuses_are_bisected_out_with_the_stores_message(broker: Tansu, loader_store: Store) -> None:
    ch_store = loader_store
    ch_store.execute("ALTER TABLE rpc_calls MODIFY COLUMN code FixedString(3)")  # a narrower column than the contract
    items = [("rpc", rpc_event(i)) for i in range(20_000)]  # codes "200".."202" fit
    refused = {3: rpc_event(3, code="UNAVAILABLE"), 9_999: rpc_event(9_999, code="DEADLINE_EXCEEDED"),
               19_000: rpc_event(19_000, code="1234")}
    for position, event in refused.items():
        items[position] = ("rpc", event)
    produce(broker.bootstrap, items)
    with LoaderThread(broker.bootstrap, ch_store, batch_rows=50_000):
        wait_for(lambda: count(ch_store, "rpc_calls") == 20_000 - len(refused), 120, "every row the store takes")
        dead = _dead_letters(broker.bootstrap, len(refused))
    assert sorted(json.loads(events.dead_letter_payload(d))["code"] for d in dead) == sorted(
        e["code"] for e in refused.values())
    assert all(d["reason"].startswith("the store refused the row: ClickHouse") and "FixedString" in d["reason"]
               for d in dead), dead[0]["reason"]
    assert distinct_offsets(ch_store, "rpc_calls") == count(ch_store, "rpc_calls"), "a row was stored twice"


def test_a_loader_stuck_on_its_store_is_not_ready_and_sigterm_stops_it_without_committing(
        broker: Tansu, ch_store: Store, tmp_path: Path) -> None:
    produce(broker.bootstrap, [("rpc", rpc_event(i)) for i in range(1000)])
    group, port = "stuck-loader", free_port()
    unreachable = f"clickhouse://127.0.0.1:{free_port()}/nowhere?timeout=2"  # nothing listens there
    log = tmp_path / "loader.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "svcpulse", "load", "--bootstrap", broker.bootstrap, "--store", unreachable,
         "--group", group, "--batch-age", "0.3", "--metrics-port", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "SVCPULSE_LOADER_STALL_S": "3"})
    settings = Settings(kafka_bootstrap=broker.bootstrap, group_id=group, loader_stall_s=3,
                        users_file=str(write_users(tmp_path / "users.json")))
    try:
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 503, 60, "the loader's 503")
        assert "no progress" in httpx.get(f"http://127.0.0.1:{port}/readyz").json()["loader"]
        with TestClient(create_app(settings, store=ch_store)) as api:
            wait_for(lambda: api.get("/readyz").status_code == 503, 60, "the API's 503")
            assert "no progress" in api.get("/readyz", headers=auth("vic")).json()["loader"]  # detail: a user's
            stopping = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
            assert time.monotonic() - stopping < 15, "SIGTERM must stop a retrying loader within its grace period"
            consumer = open_consumer("kafka-python", broker.bootstrap, group)
            partitions = {("svcpulse.rpc", p) for p in consumer.partitions_for("svcpulse.rpc")}
            assert set(consumer.committed(partitions).values()) == {None}, "committed what was never written"
            consumer.close()
            with LoaderThread(broker.bootstrap, ch_store, group_id=group):  # a healthy loader takes over
                wait_for(lambda: count(ch_store, "rpc_calls") == 1000, 60, "the rows")
                wait_for(lambda: api.get("/readyz").status_code == 200, 30, "the API ready again")
    finally:
        proc.kill()
    assert "stopping with an unwritten batch" in log.read_text()
