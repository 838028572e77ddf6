"""Scale-out: two loader processes in one consumer group share the partitions, and when one is killed
with SIGKILL mid-stream the other takes its partitions over; every event lands exactly once.
Real Tansu broker, real ClickHouse 18.16 server, loaders started as `python -m svcpulse load`."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.store import Store
from pipeline.topics import LOADED_TOPICS
from svcpulse.services import ClickHouseServer, Tansu
from tests.factories import rpc_event
from tests.integration.helpers import count, distinct_offsets, produce, wait_for

pytestmark = pytest.mark.services

PARTITIONS = 4
ALL_PARTITIONS = {f"{topic}[{p}]" for topic in LOADED_TOPICS for p in range(PARTITIONS)}
_ASSIGNED = re.compile(r"assigned (\[.*\])")


def start_loader(bootstrap: str, store_url: str, log: Path, client: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "svcpulse", "load", "--bootstrap", bootstrap, "--store", store_url,
               "--group", "scaleout", "--batch-rows", "5000", "--batch-age", "0.3", "--kafka-client", client]
    env = {**os.environ, "SVCPULSE_PARTITIONS": str(PARTITIONS)}
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def last_assignment(log: Path) -> set[str] | None:
    """The partitions a loader holds now: its log's last `assigned [...]` line."""
    found = _ASSIGNED.findall(log.read_text()) if log.exists() else []
    return set(ast.literal_eval(found[-1])) if found else None


def shared_evenly(first: Path, second: Path) -> bool:
    a, b = last_assignment(first), last_assignment(second)
    return bool(a and b) and not a & b and a | b == ALL_PARTITIONS  # type: ignore[operator]


def produce_stream(bootstrap: str, total: int, chunk: int, pause_s: float) -> threading.Thread:
    """Events keep arriving while a loader dies: chunks of distinct events, paced."""
    def run() -> None:
        for start in range(0, total, chunk):
            # 40 callees (the message key) so every partition gets data
            produce(bootstrap, [("rpc", rpc_event(i, callee=f"svc-{i % 40}")) for i in range(start, start + chunk)])
            time.sleep(pause_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_two_loaders_share_partitions_and_one_survives_the_other_dying(
        broker: Tansu, ch_store: Store, clickhouse: ClickHouseServer, tmp_path: Path, client: str) -> None:
    total = 100_000
    url = f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}"
    logs = [tmp_path / "loader-a.log", tmp_path / "loader-b.log"]
    survivor = start_loader(broker.bootstrap, url, logs[0], client)
    victim = start_loader(broker.bootstrap, url, logs[1], client)
    try:
        wait_for(lambda: shared_evenly(*logs), 60, "both loaders holding half of the partitions")
        producer = produce_stream(broker.bootstrap, total, chunk=10_000, pause_s=0.5)
        wait_for(lambda: count(ch_store, "rpc_calls") >= 30_000, 90, "30,000 rows loaded by the pair")
        assert producer.is_alive(), "the kill must come while events are still arriving"
        os.kill(victim.pid, signal.SIGKILL)  # mid-stream: some of its batches inserted, not committed
        victim.wait()
        wait_for(lambda: last_assignment(logs[0]) == ALL_PARTITIONS, 60, "the survivor taking every partition")
        producer.join(timeout=120)
        wait_for(lambda: distinct_offsets(ch_store, "rpc_calls") == total, 120, "every event")
        time.sleep(2)  # a redelivered duplicate would land now
        assert count(ch_store, "rpc_calls") == total, logs[0].read_text()[-3000:]
        assert survivor.poll() is None, "the survivor must keep running"
    finally:
        for proc in (survivor, victim):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    assert survivor.returncode == 0, logs[0].read_text()[-3000:]


def test_processes_runs_a_group_of_loaders_and_sigterm_stops_them_all(
        broker: Tansu, ch_store: Store, clickhouse: ClickHouseServer, tmp_path: Path) -> None:
    total = 20_000
    produce(broker.bootstrap, [("rpc", rpc_event(i, callee=f"svc-{i % 40}")) for i in range(total)])
    log = tmp_path / "group.log"
    url = f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}"
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "svcpulse", "load", "--bootstrap", broker.bootstrap, "--store", url, "--group",
         "processes", "--batch-age", "0.3", "--processes", "2"], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: distinct_offsets(ch_store, "rpc_calls") == total, 120, "every event")
        wait_for(lambda: len(_ASSIGNED.findall(log.read_text())) >= 2, 30, "two members assigned")
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0, log.read_text()[-2000:]
    finally:
        supervisor.kill()
    assert count(ch_store, "rpc_calls") == total
    assert log.read_text().count("[load] stopped after loading") == 2
