"""Cluster DDL: rewrite the single-server migrations for a ClickHouse cluster (shards x replicas).

`migrate` calls `for_cluster` on every statement when SVCPULSE_CLICKHOUSE_CLUSTER names a cluster of
the servers' `remote_servers` config. Pure text in, text out, so the rules are unit-tested alone:

- Every CREATE gets `ON CLUSTER <cluster>` (distributed DDL: one `svcpulse migrate` sets up all nodes).
- Sharded tables (raw events and their rollups, the big ones) become `<table>_local` with a
  Replicated*MergeTree engine whose ZooKeeper path holds `{shard}`, plus a Distributed table under
  the original name over them. Readers and the loader keep using the original names.
- Other tables (registry, overrides, audit, alarms, weight history: small, written by the API) are
  replicated to every node (a path without `{shard}`) and not distributed: any node answers alone.
- Materialized views read and write the `_local` tables, so each shard rolls up its own rows.
- `ALTER TABLE` (additive column changes) runs ON CLUSTER on the `_local` table and then on the
  Distributed table of a sharded table, or on the replicated table itself.

The Distributed sharding key is deterministic (Kafka partition and offset): a retried insert splits
into the same per-shard blocks, which ReplicatedMergeTree's block deduplication then drops.
"""

from __future__ import annotations

import re

# Tables split across shards: the raw event tables and the rollups fed from them.
SHARDED = ("tcp_connections", "rpc_calls", "instance_load", "rpc_calls_1m", "rpc_calls_1h", "tcp_connections_1m",
           "tcp_health_1m")
LOCAL_SUFFIX = "_local"
_RAW_SHARDING_KEY = "cityHash64(_partition, _offset)"
_ROLLUP_SHARDING_KEY = "rand()"  # rollup rows arrive through the views, never through Distributed

_CREATE_TABLE = re.compile(r"^CREATE TABLE (IF NOT EXISTS )?(\w+)\.(\w+)\s", re.IGNORECASE)
_ALTER_TABLE = re.compile(r"^ALTER TABLE (\w+)\.(\w+)\s", re.IGNORECASE)
_CREATE_VIEW = re.compile(r"^CREATE MATERIALIZED VIEW (IF NOT EXISTS )?(\w+)\.(\w+)\s", re.IGNORECASE)
_ENGINE = re.compile(r"ENGINE\s*=\s*(\w*)MergeTree\b(\s*\(([^()]*)\))?", re.IGNORECASE)
_CLUSTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_cluster_name(cluster: str) -> str:
    """The name, if it can be written into DDL unquoted; else a ValueError saying what is allowed."""
    if not _CLUSTER_NAME.match(cluster):
        raise ValueError(f"cluster name {cluster!r}: letters, digits and _ only (as in remote_servers)")
    return cluster


def zookeeper_path(database: str, table: str, sharded: bool) -> str:
    """Where the replicas of one table meet in ZooKeeper; `{shard}` splits sharded tables per shard."""
    group = "{shard}" if sharded else "all"
    return f"/clickhouse/tables/{group}/{database}/{table}"


def replicated_engine(statement: str, database: str, table: str, sharded: bool) -> str:
    """MergeTree family engine -> its Replicated twin with (path, '{replica}'[, original args])."""
    def replace(match: re.Match[str]) -> str:
        args = [f"'{zookeeper_path(database, table, sharded)}'", "'{replica}'"]
        if match[3] and match[3].strip():
            args.append(match[3].strip())
        return f"ENGINE = Replicated{match[1]}MergeTree({', '.join(args)})"

    rewritten, count = _ENGINE.subn(replace, statement, count=1)
    if count != 1:
        raise ValueError(f"table {database}.{table}: no MergeTree-family engine to replicate")
    return rewritten


def _on_cluster(statement: str, pattern: re.Pattern[str], cluster: str, name: str) -> str:
    """Insert ON CLUSTER after the created object's name (and rename it)."""
    match = pattern.match(statement)
    assert match is not None
    head = statement[: match.start(3)] + name + f" ON CLUSTER {cluster}"
    return head + statement[match.end(3):]


def _table(statement: str, database: str, table: str, cluster: str) -> list[str]:
    if table not in SHARDED:
        replicated = replicated_engine(statement, database, table, sharded=False)
        return [_on_cluster(replicated, _CREATE_TABLE, cluster, table)]
    local = table + LOCAL_SUFFIX
    replicated = replicated_engine(statement, database, local, sharded=True)
    key = _ROLLUP_SHARDING_KEY if table.endswith("_1m") else _RAW_SHARDING_KEY
    distributed = (f"CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} "
                   f"AS {database}.{local} ENGINE = Distributed({cluster}, {database}, {local}, {key})")
    return [_on_cluster(replicated, _CREATE_TABLE, cluster, local), distributed]


def _view(statement: str, database: str, view: str, cluster: str) -> str:
    """The view reads a sharded source's local table and writes a sharded target's local table."""
    for table in SHARDED:
        for keyword in ("TO", "FROM"):
            statement = re.sub(rf"\b{keyword}\s+{database}\.{table}\b",
                               f"{keyword} {database}.{table}{LOCAL_SUFFIX}", statement)
    return _on_cluster(statement, _CREATE_VIEW, cluster, view)


def _alter(statement: str, match: re.Match[str], cluster: str) -> list[str]:
    """Shard tables first: a Distributed table may not name a column its shards lack yet."""
    database, table, rest = match[1], match[2], statement[match.end():].lstrip()
    targets = [table + LOCAL_SUFFIX, table] if table in SHARDED else [table]
    return [f"ALTER TABLE {database}.{name} ON CLUSTER {cluster} {rest}" for name in targets]


def for_cluster(statement: str, cluster: str) -> list[str]:
    """The statement(s) that replace one single-server migration statement on `cluster`."""
    check_cluster_name(cluster)
    text = statement.strip()
    if match := _CREATE_TABLE.match(text):
        return _table(text, match[2], match[3], cluster)
    if match := _CREATE_VIEW.match(text):
        return [_view(text, match[2], match[3], cluster)]
    if match := _ALTER_TABLE.match(text):
        return _alter(text, match, cluster)
    raise ValueError(f"no cluster rule for statement: {text[:80]!r} (add one to pipeline/cluster.py)")


def create_database(database: str, cluster: str) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {check_cluster_name(cluster)}"
