"""Loading through the real cluster with the real loader processes, while parts of it fail.

- 1,000,000 events through 2 loaders, one replica of shard 1 killed with SIGKILL mid-load and
  restarted, then one loader killed with SIGKILL: every event exactly once, the replicas of each
  shard equal (caught up within 60 s), and every query answers as a single server loaded with the
  same events does.
- A retried batch whose first attempt reached one shard only: each shard drops the block it has.
- The redelivery guard sees rows only one replica has; a loader refuses servers without the config.
- A whole shard down for 60 s; ZooKeeper down for 30 s: the loaders wait and retry, nothing lost
  or doubled.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from api.alarms.rules import RuleSpec
from api.alarms.service import rule_series
from api.queries.weights import observed_instances
from pipeline.batch import columns
from pipeline.cluster import EVERY_REPLICA_SETTINGS, LOADER_SETTINGS, every_replica
from pipeline.redelivery import RedeliveryGuard
from pipeline.store import Store, StoreError, open_store
from pipeline.topics import RPC, TABLE_BY_KIND, TOPIC_BY_KIND
from pipeline.transform import COLUMNS, Message, to_row
from svcpulse.cluster_services import CLUSTER, LocalCluster
from svcpulse.services import ClickHouseServer, Tansu
from tests.cluster import answers, dataset
from tests.cluster.helpers import (
    heal,
    local_counts,
    node_store,
    raw_totals,
    replica_fingerprints,
    start_loader,
    stop_loaders,
    sync_replicas,
    try_count,
)
from tests.integration.helpers import produce, wait_for

MILLION = 1_000_000


def produce_in_background(bootstrap: str, total: int, end_ms: int) -> threading.Thread:
    thread = threading.Thread(target=produce, args=(bootstrap, dataset.events(total, end_ms)), daemon=True)
    thread.start()
    return thread


def phases() -> Callable[[str], float]:
    """phase(what) prints the seconds since the start with what happened; returns them (no text: silent)."""
    started = time.monotonic()

    def phase(what: str = "") -> float:
        elapsed = time.monotonic() - started
        if what:
            print(f"[{elapsed:6.1f} s] {what}", flush=True)
        return elapsed

    return phase


def all_loaded(store: Store, total: int) -> bool:
    totals = raw_totals(store)
    return sum(n for n, _ in totals.values()) == total and sum(u for _, u in totals.values()) == total


def insert_directly(store: Store, total: int, end_ms: int, chunk: int = 200_000) -> None:
    """The same events as rows straight into a single server (no Kafka: only the queries are compared)."""
    batch: dict[str, list[tuple[object, ...]]] = {kind: [] for kind in TABLE_BY_KIND}

    def flush(kind: str) -> None:
        if batch[kind]:
            store.insert(TABLE_BY_KIND[kind], COLUMNS[kind], columns(batch[kind]))
            batch[kind] = []

    for n, (kind, event) in enumerate(dataset.events(total, end_ms)):
        message = Message(TOPIC_BY_KIND[kind], 0, n, event["ts_ms"], None, b"")
        batch[kind].append(to_row(kind, event, message))
        if len(batch[kind]) >= chunk:
            flush(kind)
    for kind in TABLE_BY_KIND:
        flush(kind)


@pytest.mark.timeout(1800)  # ~3 minutes on an idle machine; a busy one (the shared machine) takes several times that
def test_a_million_events_through_two_loaders_while_a_replica_and_a_loader_are_killed(
        cluster: LocalCluster, cluster_store: Store, ch_store: Store, broker: Tansu, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    end_ms = (int(time.time()) // 60 - 1) * 60_000
    url = cluster.store_url(cluster_store.database)
    loaders = [start_loader(broker.bootstrap, url, tmp_path / f"loader-{n}.log", "cluster") for n in (1, 2)]
    # The replica the loaders do not insert through (killing that one, whose rollup rows the loader then
    # repairs, is tests/cluster/test_rollups.py's drill; docs/scaling.md, "Loading through the cluster").
    victim = cluster.node(1, 2)
    phase = phases()
    try:
        producer = produce_in_background(broker.bootstrap, MILLION, end_ms)
        insert_directly(ch_store, MILLION, end_ms)  # the single server's copy, meanwhile
        phase("the single server has its copy")
        wait_for(lambda: try_count(cluster_store, "rpc_calls") >= MILLION // 4, 300, "a quarter of the events")
        victim.stop(kill=True)  # SIGKILL: no flush, no goodbye to ZooKeeper
        phase("s1r2 killed")
        wait_for(lambda: try_count(cluster_store, "rpc_calls") >= MILLION // 2, 300, "loading on without it")
        victim.start()
        restarted = phase("s1r2 restarted")
        wait_for(lambda: try_count(cluster_store, "rpc_calls") >= MILLION * 7 // 10, 300, "70% of the events")
        os.kill(loaders[1].pid, signal.SIGKILL)  # its last batches inserted, not committed: redelivered to
        loaders[1].wait()                        # the survivor, whose guard reads every replica
        phase("loader 2 killed")
        producer.join(timeout=300)
        phase("every event produced")
        wait_for(lambda: all_loaded(cluster_store, MILLION), 300, "every event in the cluster")
        loaded = phase("every event in the cluster")
        shard_one = lambda: local_counts(cluster, cluster_store.database, "rpc_calls")  # noqa: E731
        wait_for(lambda: shard_one()["s1r1"] == shard_one()["s1r2"], 60 + max(0.0, restarted + 60 - loaded),
                 "the killed replica catching up")
        phase(f"s1r2 caught up, {phase() - restarted:.1f} s after its restart")
    finally:
        stop_loaders(*loaders)
    assert loaders[0].returncode == 0 and loaders[1].returncode == -signal.SIGKILL
    expected = dataset.counts(MILLION)
    totals = raw_totals(cluster_store)
    assert totals == {table: (expected[kind],) * 2 for kind, table in TABLE_BY_KIND.items()}
    sync_replicas(cluster, cluster_store.database)
    for table in TABLE_BY_KIND.values():
        prints = replica_fingerprints(cluster, cluster_store.database, table)
        assert prints["s1r1"] == prints["s1r2"] and prints["s2r1"] == prints["s2r2"], (table, prints)
        assert prints["s1r1"][0] + prints["s2r1"][0] == totals[table][0] and prints["s2r1"][0] > 0
    phase("counts and replicas checked")
    same_answers(cluster_store, ch_store, end_ms, monkeypatch)
    phase("answers compared")


def same_answers(cluster_store: Store, single_store: Store, end_ms: int, monkeypatch: pytest.MonkeyPatch) -> None:
    problems: list[str] = []
    for store in (cluster_store, single_store):
        answers.write_small_tables(store, end_ms)
    answers.freeze_routes(monkeypatch, end_ms / 1000 + 30)
    with answers.client_on(single_store) as one, answers.client_on(cluster_store) as many:
        for url in [*answers.query_urls(end_ms), *answers.SMALL_TABLE_URLS]:
            expected, got = one.get(url), many.get(url)
            assert expected.status_code == got.status_code == 200, (url, expected.text, got.text)
            problems += answers.differences(expected.json(), got.json(), url, answers.metric_tolerance(url))
    window = (end_ms, 10, 300)  # the weight feed's per-instance windows, as of end_ms
    problems += answers.differences(observed_instances(single_store, *window),
                                    observed_instances(cluster_store, *window), "weights: observed_instances")
    rule = RuleSpec(id="p99", metric="latency_p99", kind="wave_abs", threshold=50, service="svc-02",
                    against="baseline", baseline_minutes=30)
    minute = end_ms // 1000 - 120
    problems += answers.differences(rule_series(single_store, rule, minute),
                                    rule_series(cluster_store, rule, minute), "alarm series",
                                    answers.LATENCY_TOLERANCE_MS)
    problems += answers.differences(answers.dashboard_answers(single_store, end_ms - 3_600_000, end_ms),
                                    answers.dashboard_answers(cluster_store, end_ms - 3_600_000, end_ms), "dashboards")
    print("largest quantile gaps (ms) by tolerance:", answers.largest_gap)
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:40])


def rpc_batch(count: int) -> list[list[object]]:
    """One loader batch of rpc rows as the loader builds it (columns, with Kafka coordinates)."""
    events = [dataset.rpc(i, 1_764_000_000_000 + i) for i in range(count)]
    rows = [to_row("rpc", event, Message(RPC, i % 4, i, event["ts_ms"], None, b""))
            for i, event in enumerate(events)]
    return columns(rows)


def test_a_retried_batch_is_dropped_by_each_shard_that_already_has_it(cluster: LocalCluster,
                                                                     cluster_store: Store) -> None:
    batch = rpc_batch(20_000)
    # A failure after one shard wrote its block, made deterministic: with insert_quorum=2 and one replica
    # of shard 2 down, shard 2 refuses its block while shard 1 (both replicas up) writes its own.
    cluster.node(2, 2).stop()
    quorum = open_store(cluster.store_url(cluster_store.database), settings={**LOADER_SETTINGS, "insert_quorum": 2})
    with pytest.raises(StoreError, match="less than requested quorum"):
        quorum.insert("rpc_calls", COLUMNS["rpc"], batch)
    quorum.close()
    first_try = local_counts(cluster, cluster_store.database, "rpc_calls", cluster.shard(1))
    assert first_try["s1r1"] > 0 and local_counts(cluster, cluster_store.database, "rpc_calls",
                                                  [cluster.node(2, 1)]) == {"s2r1": 0}
    heal(cluster)
    cluster_store.insert("rpc_calls", COLUMNS["rpc"], batch)  # the loader's retry: the same batch
    cluster_store.insert("rpc_calls", COLUMNS["rpc"], batch)  # and once more after it succeeded
    sync_replicas(cluster, cluster_store.database)
    counts = local_counts(cluster, cluster_store.database, "rpc_calls")
    assert counts["s1r1"] == counts["s1r2"] == first_try["s1r1"]  # shard 1 kept its first copy only
    assert counts["s1r1"] + counts["s2r1"] == 20_000
    assert raw_totals(cluster_store)["rpc_calls"] == (20_000, 20_000)
    # the rollups saw each row once too: a dropped block does not reach the materialized views
    assert cluster_store.execute("SELECT countMerge(calls) FROM rpc_calls_1m") == [(20_000,)]
    assert cluster_store.execute("SELECT countMerge(calls) FROM rpc_calls_1h") == [(20_000,)]


def load_through_an_outage(cluster_store: Store, cluster: LocalCluster, broker: Tansu, log: Path,
                           outage: Callable[[], None], recovery: Callable[[], None], seconds: float) -> str:
    """Load 100,000 events, half of them produced while `outage` lasts `seconds`; returns the loader's log."""
    total, end_ms = 100_000, (int(time.time()) // 60 - 1) * 60_000
    stream = list(dataset.events(total, end_ms))
    loader = start_loader(broker.bootstrap, cluster.store_url(cluster_store.database), log, "drill")
    try:
        produce(broker.bootstrap, stream[:total // 2])
        wait_for(lambda: all_loaded(cluster_store, total // 2), 120, "the first half")
        outage()
        down_at = time.monotonic()
        produce(broker.bootstrap, stream[total // 2:])
        time.sleep(max(0.0, seconds - (time.monotonic() - down_at)))
        assert loader.poll() is None, "the loader must wait, not exit"
        recovery()
        back_at = time.monotonic()
        wait_for(lambda: all_loaded(cluster_store, total), 180, "every event after the outage")
        print(f"outage of {back_at - down_at:.0f} s; every event loaded {time.monotonic() - back_at:.1f} s after "
              "the cluster was back")
    finally:
        stop_loaders(loader)
    assert loader.returncode == 0
    sync_replicas(cluster, cluster_store.database)
    for table in TABLE_BY_KIND.values():
        prints = replica_fingerprints(cluster, cluster_store.database, table)
        assert prints["s1r1"] == prints["s1r2"] and prints["s2r1"] == prints["s2r2"], (table, prints)
    return log.read_text()


def test_a_whole_shard_down_for_60_s_pauses_the_loader_and_loses_nothing(
        cluster: LocalCluster, cluster_store: Store, broker: Tansu, tmp_path: Path) -> None:
    shard = cluster.shard(2)
    text = load_through_an_outage(cluster_store, cluster, broker, tmp_path / "loader.log",
                                  lambda: [node.stop(kill=True) for node in shard], lambda: heal(cluster), 60)
    assert re.search(r"write failed\W+ClickHouse [\d.:]+: no replica of a shard accepts connections \(a whole "
                     r"shard is down\)", text), text[-2000:]
    assert "with partitions paused" in text


def test_zookeeper_down_for_30_s_makes_the_loader_back_off_and_loses_nothing(
        cluster: LocalCluster, cluster_store: Store, broker: Tansu, tmp_path: Path) -> None:
    text = load_through_an_outage(cluster_store, cluster, broker, tmp_path / "loader.log",
                                  lambda: cluster.zookeeper.stop(kill=True), lambda: heal(cluster), 30)
    assert re.search(r"write failed\W+ClickHouse [\d.:]+: replicated tables are read-only: the server has no "
                     r"ZooKeeper session", text), text[-2000:]
    backoffs = [float(s) for s in re.findall(r"retrying in ([\d.]+) s", text)]
    assert len(backoffs) >= 2 and backoffs[1] > backoffs[0] and max(backoffs) <= 10, backoffs  # backs off


def test_the_redelivery_guard_sees_rows_that_only_one_replica_has(cluster: LocalCluster,
                                                                   cluster_store: Store) -> None:
    database = cluster_store.database
    batch = rpc_batch(2_000)
    rows = list(zip(*batch, strict=True))
    stored, redelivered_new = rows[:1_500], rows[1_500:]
    with node_store(cluster.node(1, 1), database) as first, node_store(cluster.node(1, 2), database) as second:
        first.execute("SYSTEM STOP FETCHES rpc_calls_local")  # replica 1 lags: it never copies what 2 takes
        try:
            second.insert("rpc_calls_local", COLUMNS["rpc"], columns(stored))
            # Through the Distributed table, a reader that asks replica 1 of shard 1 misses them...
            in_order = open_store(cluster.store_url(database), settings={"load_balancing": "in_order"})
            assert in_order.execute("SELECT count() FROM rpc_calls") == [(0,)]
            in_order.close()
            # ...the guard reads every replica, so a redelivery of them is skipped.
            guard = RedeliveryGuard()
            guard.source, guard.settings = every_replica(database, CLUSTER), EVERY_REPLICA_SETTINGS
            guard.assigned({(RPC, partition) for partition in range(4)})
            assert guard.filter(cluster_store, "rpc_calls", rows) == redelivered_new
        finally:
            first.execute("SYSTEM START FETCHES rpc_calls_local")


def test_a_loader_on_a_cluster_refuses_servers_without_the_cluster_config(clickhouse: ClickHouseServer) -> None:
    # A single server (no remote_servers of ours): the guard could not read every replica, so no start.
    result = subprocess.run([sys.executable, "-m", "svcpulse", "load", "--bootstrap", "127.0.0.1:1", "--store",
                             f"clickhouse://127.0.0.1:{clickhouse.port}/default"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "SVCPULSE_CLICKHOUSE_CLUSTER": CLUSTER})
    assert result.returncode == 2
    assert ("svcpulse load: the ClickHouse servers define no cluster svcpulse or svcpulse_replicas in "
            "remote_servers; see docs/scaling.md") in result.stderr
