"""Retention ON CLUSTER on the real cluster: expired day partitions leave every replica of every shard
(including a day only one shard holds), the rest stays everywhere."""

from __future__ import annotations

import datetime as dt

from pipeline.retention import apply_retention, retention_days
from pipeline.store import Store
from svcpulse.cluster_services import CLUSTER, LocalCluster
from tests.cluster.helpers import node_store, sync_replicas


def noon(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(12)).timestamp())


def rpc_rows(days: list[dt.date], per_day: int, first_offset: int = 0) -> list[list[object]]:
    """Columns of `per_day` rpc rows at noon of each day (defaults for every other column)."""
    count = len(days) * per_day
    values = {"ts": [noon(day) for day in days for _ in range(per_day)], "callee": ["svc"] * count,
              "_topic": ["svcpulse.rpc"] * count, "_partition": [0] * count,
              "_offset": list(range(first_offset, first_offset + count))}
    return [values[name] for name in ("ts", "callee", "_topic", "_partition", "_offset")]


def partitions(store: Store, table: str) -> set[str]:
    return {p for (p,) in store.execute("SELECT DISTINCT partition FROM system.parts WHERE active AND "
                                        "database = currentDatabase() AND table = %(t)s", {"t": table})}


def test_retention_drops_expired_partitions_on_every_replica(cluster: LocalCluster, cluster_store: Store) -> None:
    today = dt.date.today()
    day = {n: today - dt.timedelta(days=n) for n in (0, 3, 5, 10, 20, 100)}
    label = {n: d.strftime("%Y%m%d") for n, d in day.items()}
    columns = ("ts", "callee", "_topic", "_partition", "_offset")
    cluster_store.insert("rpc_calls", columns, rpc_rows([day[0], day[3], day[10]], per_day=40))
    with node_store(cluster.node(2, 1), cluster_store.database) as shard_two:  # a day on shard 2 only
        shard_two.insert("rpc_calls_local", columns, rpc_rows([day[20]], per_day=3, first_offset=1000))
    cluster_store.insert("weight_history", ("ts", "service", "instance"),
                         [[noon(day[100]), noon(day[5])], ["svc", "svc"], ["i", "i"]])
    sync_replicas(cluster, cluster_store.database)

    dropped = apply_retention(cluster_store, retention_days(7, 90, 30), today, cluster=CLUSTER)

    assert sorted(dropped) == [("rpc_calls_local", label[20]), ("rpc_calls_local", label[10]),
                               ("weight_history", label[100])]
    sync_replicas(cluster, cluster_store.database)
    for node in cluster.nodes:
        with node_store(node, cluster_store.database) as store:
            assert partitions(store, "rpc_calls_local") == {label[0], label[3]}, node.workdir.name
            assert partitions(store, "weight_history") == {label[5]}, node.workdir.name
            assert label[10] in partitions(store, "rpc_calls_1m_local"), node.workdir.name  # rollups keep 90 days
    assert cluster_store.execute("SELECT count() FROM rpc_calls") == [(80,)]
