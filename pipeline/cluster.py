"""Cluster DDL: the single-server migrations built for a ClickHouse cluster (shards x replicas).

`migrate --cluster NAME` parses every statement into an object (pipeline/ddl.py) and builds its
cluster form here from facts declared per table in SHARDED (Snuba's "migrations as objects": local
and distributed forms, the sharding key declared, never guessed from a name):

- A sharded table (raw events and the rollups fed from them) becomes `<table>_local`, a
  Replicated*MergeTree whose ZooKeeper path holds `{shard}`, plus a Distributed table under the
  original name. Readers and the loader keep the original names.
- Every other table (registry, overrides, audit, alarms, weight history, schema_migrations: small,
  written by the API) is replicated to every node (a path without `{shard}`), not distributed:
  any node answers alone. A new table is placed like this unless SHARDED names it.
- A materialized view reads its sharded sources' local tables and writes its target's local table,
  so each shard rolls up its own rows and the API's -Merge queries combine the shards.
- Every statement runs ON CLUSTER, with IF [NOT] EXISTS: distributed DDL may be re-run after a
  partial failure (a server down) and finishes what is missing.
- A column change on a replicated (not sharded) table is one plain ALTER: ReplicatedMergeTree
  replicates it to every server itself.
- ClickHouse refuses ALTER ... ON CLUSTER on a Distributed table when the shards replicate
  internally, so a column change alters the local tables and re-creates the Distributed table
  (it holds no data: inserts are synchronous, see docs/scaling.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.ddl import AlterTable, CreateTable, CreateView, DropTable, Name, Statement, parse
from pipeline.store import Store

LOCAL_SUFFIX = "_local"
_CLUSTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Sharded:
    """A table split across shards. `key` is the Distributed sharding key; None when only materialized
    views write the table (on each shard), so an insert through its Distributed table is refused."""

    key: str | None


# Deterministic: a retried batch splits into the same per-shard blocks, which ReplicatedMergeTree's
# block deduplication then drops (tests/cluster prove it).
KAFKA_ROW_KEY = "cityHash64(_partition, _offset)"

SHARDED: dict[str, Sharded] = {
    "tcp_connections": Sharded(KAFKA_ROW_KEY),
    "rpc_calls": Sharded(KAFKA_ROW_KEY),
    "instance_load": Sharded(KAFKA_ROW_KEY),
    "rpc_calls_1m": Sharded(None),
    "rpc_calls_1h": Sharded(None),
    "tcp_connections_1m": Sharded(None),
    "tcp_health_1m": Sharded(None),  # migration 0008 (issue 11)
    # migration 0009 (issue 17): rollups written only by their views on each shard
    **{f"{rollup}_{tier}": Sharded(None) for rollup in ("rpc_edges", "rpc_edge_instances", "tcp_edges")
       for tier in ("1m", "10m", "1h")},
    "workloads_1m": Sharded(None),
}

# The loader's session on a cluster (docs/scaling.md, "Loading through the cluster"):
LOADER_SETTINGS: dict[str, int | str] = {
    # An insert into a Distributed table returns only when every shard has written its block, so
    # offsets are committed only after every shard acknowledged (asynchronous is the default).
    "insert_distributed_sync": 1,
}
# The redelivery guard's read of every replica skips one that is down (a query setting: in a session,
# 18.16 would also let an insert skip a shard's block, failing it with a LOGICAL_ERROR).
EVERY_REPLICA_SETTINGS = " SETTINGS skip_unavailable_shards = 1"
REPLICAS_SUFFIX = "_replicas"  # <cluster>_replicas in remote_servers: every replica as its own shard


def check_cluster_name(cluster: str) -> str:
    """The name, if it can be written into DDL unquoted; else a ValueError saying what is allowed."""
    if not _CLUSTER_NAME.match(cluster):
        raise ValueError(f"cluster name {cluster!r}: letters, digits and _ only (as in remote_servers)")
    return cluster


def zookeeper_path(name: Name, sharded: bool) -> str:
    """Where the replicas of one table meet in ZooKeeper; `{shard}` splits sharded tables per shard."""
    group = "{shard}" if sharded else "all"
    return f"/clickhouse/tables/{group}/{name.database}/{name.table}"


def local(name: Name) -> Name:
    """The table a name stands for on one shard: its _local table when sharded, else itself."""
    return Name(name.database, name.table + LOCAL_SUFFIX) if name.table in SHARDED else name


def _replicated(table: CreateTable, name: Name, cluster: str) -> str:
    if not table.engine.endswith("MergeTree") or table.engine.startswith("Replicated"):
        raise ValueError(f"table {table.name}: engine {table.engine} has no replicated form on a cluster "
                         "(use a MergeTree-family engine)")
    args = [f"'{zookeeper_path(name, table.name.table in SHARDED)}'", "'{replica}'"]
    args += [table.engine_args] if table.engine_args else []
    return (f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} ({table.columns}) "
            f"ENGINE = Replicated{table.engine}({', '.join(args)}) {table.clauses}")


def distributed(name: Name, cluster: str) -> str:
    """The Distributed table over a sharded table's local tables, under the table's own name."""
    key = SHARDED[name.table].key
    shard_tables = local(name)
    args = f"{cluster}, {name.database}, {shard_tables.table}" + (f", {key}" if key else "")
    return f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {shard_tables} ENGINE = Distributed({args})"


def _view(view: CreateView, cluster: str) -> str:
    """A materialized view reads and writes the local tables of sharded ones (it sees each insert on
    the shard that takes it); a plain view is a query and keeps reading through the Distributed tables."""
    select, shift = view.select, 0
    for start, end, source in view.sources if view.materialized else ():
        replacement = str(local(source))
        select = select[:start + shift] + replacement + select[end + shift:]
        shift += len(replacement) - (end - start)
    kind = "MATERIALIZED VIEW" if view.materialized else "VIEW"
    target = f" TO {local(view.target)}" if view.target else ""
    return f"CREATE {kind} IF NOT EXISTS {view.name} ON CLUSTER {cluster}{target} AS {select}"


def _alter(alter: AlterTable, cluster: str) -> list[str]:
    if alter.name.table not in SHARDED:
        # One replicated table spans every server, and ReplicatedMergeTree replicates a column change
        # itself. ON CLUSTER would run it once per shard (on one replica of each) on that same table, and
        # the second run fails with "column with this name already exists".
        return [f"ALTER TABLE {alter.name} {alter.actions}"]
    statements = [f"ALTER TABLE {local(alter.name)} ON CLUSTER {cluster} {alter.actions}"]
    if alter.changes_columns:
        statements += [f"DROP TABLE IF EXISTS {alter.name} ON CLUSTER {cluster}", distributed(alter.name, cluster)]
    return statements


def _drop(drop: DropTable, cluster: str) -> list[str]:
    names = [drop.name, local(drop.name)] if drop.name.table in SHARDED else [drop.name]
    return [f"DROP {drop.kind} IF EXISTS {name} ON CLUSTER {cluster}" for name in names]


def build(statement: Statement, cluster: str) -> list[str]:
    """The statements that carry out one migration statement on every server of `cluster`."""
    if isinstance(statement, CreateTable):
        if statement.name.table not in SHARDED:
            return [_replicated(statement, statement.name, cluster)]
        return [_replicated(statement, local(statement.name), cluster), distributed(statement.name, cluster)]
    if isinstance(statement, CreateView):
        return [_view(statement, cluster)]
    if isinstance(statement, AlterTable):
        return _alter(statement, cluster)
    return _drop(statement, cluster)


def for_cluster(statement: str, cluster: str) -> list[str]:
    """The cluster form of one single-server migration statement (ValueError when it has none)."""
    return build(parse(statement), check_cluster_name(cluster))


def every_replica(database: str, cluster: str) -> Callable[[str], str]:
    """What the loader's redelivery guard reads for a sharded table on `cluster`: the local table of every
    replica of every shard (the `<cluster>_replicas` cluster lists each as a shard of its own), so it sees
    rows a replica took before replication copied them to the others, whichever replica that was."""
    replicas = check_cluster_name(cluster + REPLICAS_SUFFIX)
    return lambda table: f"cluster({replicas}, {database}, {local(Name(database, table)).table})"


def missing_clusters(store: Store, cluster: str) -> list[str]:
    """The clusters a loader on `cluster` needs that the server's remote_servers lacks ([] when ready)."""
    needed = [check_cluster_name(cluster), cluster + REPLICAS_SUFFIX]
    found = {name for (name,) in store.execute("SELECT DISTINCT cluster FROM system.clusters")}
    return [name for name in needed if name not in found]


def create_database(database: str, cluster: str) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {check_cluster_name(cluster)}"
