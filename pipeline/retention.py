"""Retention by dropping whole day partitions: works on every ClickHouse (18.16 has no TTL)."""

from __future__ import annotations

import datetime as dt

from pipeline.cluster import check_cluster_name
from pipeline.store import Store

_PARTITIONS_SQL = (
    "SELECT DISTINCT table, partition FROM {parts} "
    "WHERE database = %(db)s AND active ORDER BY table, partition"
)


def retention_days(raw_days: int, rollup_days: int, load_days: int) -> dict[str, int]:
    """Days kept per table; every table partitioned by day appears here (audit_log and alarm_history
    are partitioned by month and kept: an audit trail is not dropped behind the operators' backs)."""
    return {
        "tcp_connections": raw_days,
        "rpc_calls": raw_days,
        "instance_load": load_days,
        "rpc_calls_1m": rollup_days,
        "rpc_calls_1h": rollup_days,
        "tcp_connections_1m": rollup_days,
        "workloads_1m": rollup_days,
        "rpc_edges_1m": rollup_days,
        "rpc_edges_1h": rollup_days,
        "rpc_edge_instances_1m": rollup_days,
        "rpc_edge_instances_1h": rollup_days,
        "tcp_edges_1m": rollup_days,
        "tcp_edges_1h": rollup_days,
        "rpc_edges_10m": rollup_days,
        "rpc_edge_instances_10m": rollup_days,
        "tcp_edges_10m": rollup_days,
        "tcp_health_1m": rollup_days,
        "weight_history": rollup_days,
    }


def expired(partitions: list[tuple[str, str]], keep_days: dict[str, int],
            today: dt.date) -> list[tuple[str, str]]:
    """(table, partition) pairs older than their table's retention; pure, so tested without a store."""
    doomed = []
    for table, partition in partitions:
        days = keep_days.get(table.removesuffix("_local"))  # a cluster's shard tables (pipeline/cluster.py)
        if days is None or not (partition.isdigit() and len(partition) == 8):
            continue  # not a day-partitioned table of ours
        day = dt.date(int(partition[:4]), int(partition[4:6]), int(partition[6:]))
        if (today - day).days >= days:
            doomed.append((table, partition))
    return doomed


def drop_partition_sql(table: str, partition: str, cluster: str = "") -> str:
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""  # every shard and replica drops its part
    return f"ALTER TABLE {table}{on_cluster} DROP PARTITION {int(partition)}"


def apply_retention(store: Store, keep_days: dict[str, int], today: dt.date | None = None,
                    dry_run: bool = False, cluster: str = "") -> list[tuple[str, str]]:
    """Drop expired day partitions; returns what was (or, with dry_run, would be) dropped.

    On a cluster the partitions of every shard are listed (a day may have rows on one shard only), and
    ON CLUSTER drops each on every replica of every shard that has it."""
    parts = f"cluster({check_cluster_name(cluster)}, system.parts)" if cluster else "system.parts"
    rows = store.execute(_PARTITIONS_SQL.format(parts=parts), {"db": store.database})
    doomed = expired([(str(t), str(p)) for t, p in rows], keep_days, today or dt.date.today())
    if not dry_run:
        for table, partition in doomed:
            store.execute(drop_partition_sql(table, partition, cluster))
    return doomed
