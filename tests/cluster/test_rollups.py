"""Rollup rows of an insert that fails after its raw part is written, on the real cluster (ClickHouse 18.16):
the loader's rollup repair (pipeline/rollup_repair.py) leaves every rollup equal to what the raw table
implies (tests/cluster/rollups.py), with no row doubled.

- Deterministic: a materialized view that throws on one marked event fails the insert after ClickHouse
  wrote the block's raw part (a division by zero: not an error about the data, so the loader retries
  the whole batch instead of bisecting it). 18.16 pushes a block to its views in name order after the
  raw part, so the view's name picks which real views ran before the failure: "zzz_..." sorts last
  (every rollup has the block's rows: nothing to repair, and the retry, dropped as a duplicate with its
  views, doubles nothing); "a_..." sorts first (no rollup has them on that shard: the repair adds them).
- For real: the server the loader inserts through is killed with SIGKILL mid-load and restarted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pipeline.store import Store
from svcpulse.cluster_services import ClusterNode, LocalCluster
from svcpulse.services import Tansu
from tests.cluster import dataset
from tests.cluster.helpers import (
    heal,
    node_store,
    raw_totals,
    start_loader,
    stop_loaders,
    sync_replicas,
    try_count,
)
from tests.cluster.rollups import differences
from tests.integration.helpers import produce, wait_for

MARKED_CALLER = "caller-boom"


def add_throwing_view(cluster: LocalCluster, database: str, name: str) -> None:
    """A view on every server's rpc_calls_local that fails the insert of a block holding the marked call."""
    for node in cluster.nodes:
        with node_store(node, database) as store:
            store.execute(f"CREATE TABLE IF NOT EXISTS {database}.throws (x UInt8) ENGINE = Null")
            store.execute(f"CREATE MATERIALIZED VIEW {database}.{name} TO {database}.throws AS "
                          f"SELECT intDiv(1, toUInt8(caller != '{MARKED_CALLER}')) AS x "
                          f"FROM {database}.rpc_calls_local")


def loaded(store: Store, total: int) -> bool:
    totals = raw_totals(store)
    return sum(n for n, _ in totals.values()) == total and sum(u for _, u in totals.values()) == total


def checks_settled(log: Path) -> bool:
    """Every failed block the loader registered for a rollup check has been checked (repaired if needed)."""
    text = log.read_text()
    pending = text.count("rollup check pending for a failed block")
    return pending > 0 and text.count("rollup check done for a failed block") == pending


@pytest.mark.timeout(600)
@pytest.mark.parametrize("view", ["zzz_throws_mv", "a_throws_mv"])
def test_rollups_after_an_insert_that_failed_after_its_raw_part(
        cluster: LocalCluster, cluster_store: Store, broker: Tansu, tmp_path: Path, view: str) -> None:
    add_throwing_view(cluster, cluster_store.database, view)
    end_ms = (int(time.time()) // 60 - 1) * 60_000
    items = list(dataset.events(20_000, end_ms))
    items.insert(10_000, ("rpc", dict(dataset.rpc(7, end_ms - 30_000), caller=MARKED_CALLER)))
    log = tmp_path / "loader.log"
    loader = start_loader(broker.bootstrap, cluster.store_url(cluster_store.database), log, "rollups")
    try:
        produce(broker.bootstrap, items)
        wait_for(lambda: loaded(cluster_store, len(items)), 180, "every event once")
        # the insert did fail: its raw part is visible a moment before the loader hears the error and logs it
        wait_for(lambda: "Division by zero: while pushing to view" in log.read_text(), 60, "the failed insert")
        wait_for(lambda: checks_settled(log), 120, "the failed block's rollup check")
        repaired = "repaired rollup rpc_calls_1m on shard" in log.read_text()
        assert repaired == view.startswith("a_"), log.read_text()[-3000:]  # only views that did not run
    finally:
        stop_loaders(loader)
    sync_replicas(cluster, cluster_store.database, timeout_s=120)
    apart = differences(cluster_store)
    assert not apart, {rollup: rows[:4] for rollup, rows in apart.items()}


def kill_during_an_insert(victim: ClusterNode, timeout_s: float = 60) -> None:
    """SIGKILL the server while the loader's INSERT runs on it. Killed at a random moment, it once met
    a loader idle between inserts (faster loaders wait for the producer more): no insert failed
    mid-way and no rollup check was ever registered."""
    with node_store(victim) as store:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not store.execute(
                "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO rpc_calls (%'")[0][0]:
            time.sleep(0.002)
    victim.stop(kill=True)


@pytest.mark.timeout(1200)
def test_killing_the_server_the_loader_inserts_through_loses_no_rollup_row(
        cluster: LocalCluster, cluster_store: Store, broker: Tansu, tmp_path: Path) -> None:
    total = 300_000
    end_ms = (int(time.time()) // 60 - 1) * 60_000
    log = tmp_path / "loader.log"
    loader = start_loader(broker.bootstrap, cluster.store_url(cluster_store.database), log, "rollups-kill",
                          batch_rows=20_000)
    victim = cluster.node(1, 1)  # the first host of the store URL: every insert runs there until it dies
    try:
        producer = threading.Thread(target=produce, args=(broker.bootstrap, dataset.events(total, end_ms)),
                                    daemon=True)
        producer.start()
        wait_for(lambda: try_count(cluster_store, "rpc_calls") >= total // 5, 300, "a fifth of the events")
        kill_during_an_insert(victim)
        time.sleep(5)  # the loader's retries meet a dead server (18.16's Distributed insert then waits for it)
        victim.start()
        producer.join()
        wait_for(lambda: loaded(cluster_store, total), 600, "every event once")
        wait_for(lambda: checks_settled(log), 300, "the failed blocks' rollup checks")
        print(*[line for line in log.read_text().splitlines() if "rollup" in line or "write failed" in line][:12],
              sep="\n")
    finally:
        stop_loaders(loader)
        heal(cluster)
    sync_replicas(cluster, cluster_store.database, timeout_s=120)
    apart = differences(cluster_store)
    assert not apart, {rollup: rows[:4] for rollup, rows in apart.items()}
