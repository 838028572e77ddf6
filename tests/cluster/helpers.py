"""Helpers for tests on the real cluster: per-server stores, healing after a drill, replica state."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.cluster import LOADER_SETTINGS
from pipeline.migrate import migrate
from pipeline.store import Store, StoreError, open_store
from pipeline.topics import TABLE_BY_KIND
from svcpulse.cluster_services import CLUSTER, ClusterNode, LocalCluster
from tests.integration.helpers import wait_for


@contextmanager
def node_store(node: ClusterNode, database: str = "default") -> Iterator[Store]:
    """A store on one server only (no failover): what that replica itself holds."""
    store = open_store(f"clickhouse://127.0.0.1:{node.port}/{database}?timeout=120")
    try:
        yield store
    finally:
        store.close()


def _writable(node: ClusterNode) -> bool:
    """The server answers and none of its replicated tables is read-only (its ZooKeeper session is up)."""
    with node_store(node) as store:
        return int(store.execute("SELECT count() FROM system.replicas WHERE is_readonly")[0][0]) == 0


def heal(cluster: LocalCluster) -> None:
    """Start whatever a drill stopped and wait until every server is back in the cluster."""
    if not cluster.zookeeper.running():
        cluster.zookeeper.start()
        cluster.wait_zookeeper()
    for node in cluster.nodes:
        if not node.running():
            node.start()
    for node in cluster.nodes:
        wait_for(lambda node=node: _writable(node), 90, f"{node.workdir.name} writable")


def sync_replicas(cluster: LocalCluster, database: str, timeout_s: float = 60) -> float:
    """Wait until every replica of every replicated table in `database` has fetched what the others
    have; returns the seconds it took. SYSTEM SYNC REPLICA waits for a replica's queue to drain."""
    started = time.monotonic()
    for node in cluster.nodes:
        with node_store(node, database) as store:
            tables = [row[0] for row in store.execute(
                "SELECT table FROM system.replicas WHERE database = %(db)s", {"db": database})]
            for table in tables:
                store.execute(f"SYSTEM SYNC REPLICA {database}.{table}")
    took = time.monotonic() - started
    assert took <= timeout_s, f"replicas took {took:.0f} s to catch up"
    return took


def local_counts(cluster: LocalCluster, database: str, table: str,
                 nodes: list[ClusterNode] | None = None) -> dict[str, int]:
    """Rows of `table`'s local table on every server (or those given), by replica name."""
    counts = {}
    for node in nodes or cluster.nodes:
        with node_store(node, database) as store:
            counts[node.workdir.name] = int(store.execute(f"SELECT count() FROM {table}_local")[0][0])
    return counts


def replica_fingerprints(cluster: LocalCluster, database: str, table: str) -> dict[str, tuple[int, int]]:
    """(rows, order-independent hash of the Kafka coordinates) of each server's local table."""
    sql = (f"SELECT count(), sum(cityHash64(_topic, _partition, _offset)) FROM {table}_local")
    found = {}
    for node in cluster.nodes:
        with node_store(node, database) as store:
            rows, digest = store.execute(sql)[0]
            found[node.workdir.name] = (int(rows), int(digest))
    return found


def try_count(store: Store, table: str) -> int:
    """count() of a table, or -1 while the cluster cannot answer (a drill in progress)."""
    try:
        return int(store.execute(f"SELECT count() FROM {table}")[0][0])
    except StoreError:
        return -1


def start_loader(bootstrap: str, store_url: str, log: Path, group: str, on_cluster: bool = True,
                 batch_rows: int = 50_000) -> subprocess.Popen:
    """`svcpulse load` as its own process, as deployed (on a cluster: SVCPULSE_CLICKHOUSE_CLUSTER set)."""
    command = [sys.executable, "-m", "svcpulse", "load", "--bootstrap", bootstrap, "--store", store_url,
               "--group", group, "--batch-rows", str(batch_rows), "--batch-age", "0.5", "--kafka-client", "confluent"]
    env = {**os.environ, "SVCPULSE_PARTITIONS": "4", "SVCPULSE_CLICKHOUSE_CLUSTER": CLUSTER if on_cluster else ""}
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def stop_loaders(*loaders: subprocess.Popen) -> None:
    for loader in loaders:
        if loader.poll() is None:
            loader.send_signal(signal.SIGTERM)
    for loader in loaders:
        loader.wait(timeout=60)


def raw_totals(store: Store) -> dict[str, tuple[int, int]]:
    """(count(), uniqExact of the Kafka coordinates) of each raw table, read through the cluster."""
    return {table: tuple(store.execute(f"SELECT count(), uniqExact(_topic, _partition, _offset) FROM {table}")[0])
            for table in TABLE_BY_KIND.values()}


@contextmanager
def migrated_database(cluster: LocalCluster) -> Iterator[Store]:
    """A fresh database migrated ON CLUSTER, opened as the loader opens it; dropped on every node after."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    store = open_store(cluster.store_url(database) + "&timeout=120", settings=LOADER_SETTINGS)
    migrate(store, log=False, cluster=CLUSTER)
    try:
        yield store
    finally:
        heal(cluster)
        store.close()
        # Without waiting: each server drops its tables in the background (after a million rows that takes
        # minutes on a busy machine: a replicated table first waits for its running merges).
        dropper = open_store(cluster.store_url("default"), settings={"distributed_ddl_task_timeout": 0})
        with contextlib.suppress(StoreError):  # "... longer than distributed_ddl_task_timeout (=0)": queued
            dropper.execute(f"DROP DATABASE IF EXISTS {database} ON CLUSTER {CLUSTER}")
        dropper.close()
