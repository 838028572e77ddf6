"""The cluster DDL transform (pipeline/cluster.py): exact text for each rule, every migration covered,
and every generated statement accepted by current ClickHouse's parser (chdb, EXPLAIN AST)."""

from __future__ import annotations

import re

import pytest

from pipeline.cluster import SHARDED, create_database, for_cluster, replicated_engine
from pipeline.migrate import load_migrations, migrate
from pipeline.store import Store

RAW = ("CREATE TABLE IF NOT EXISTS db.rpc_calls (ts DateTime, _partition UInt32, _offset UInt64) "
       "ENGINE = MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (callee, ts)")
ROLLUP = ("CREATE TABLE IF NOT EXISTS db.rpc_calls_1m (minute DateTime, calls AggregateFunction(count)) "
          "ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(minute) ORDER BY minute")
VIEW = ("CREATE MATERIALIZED VIEW IF NOT EXISTS db.rpc_calls_1m_mv TO db.rpc_calls_1m AS\n"
        "SELECT toStartOfMinute(ts) AS minute, countState() AS calls\nFROM db.rpc_calls\nGROUP BY minute")
SMALL = ("CREATE TABLE IF NOT EXISTS db.registry_services (service String, changed_ms UInt64) "
         "ENGINE = ReplacingMergeTree(changed_ms) ORDER BY service")


def all_generated(cluster: str = "prod") -> list[str]:
    return [out for m in load_migrations() for statement in m.statements("svcpulse")
            for out in for_cluster(statement, cluster)]


def test_a_raw_table_becomes_a_replicated_local_table_and_a_distributed_one() -> None:
    local, distributed = for_cluster(RAW, "prod")
    assert local == ("CREATE TABLE IF NOT EXISTS db.rpc_calls_local ON CLUSTER prod (ts DateTime, _partition UInt32, "
                     "_offset UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/rpc_calls_local', "
                     "'{replica}') PARTITION BY toYYYYMMDD(ts) ORDER BY (callee, ts)")
    assert distributed == ("CREATE TABLE IF NOT EXISTS db.rpc_calls ON CLUSTER prod AS db.rpc_calls_local "
                           "ENGINE = Distributed(prod, db, rpc_calls_local, cityHash64(_partition, _offset))")


def test_a_rollup_is_sharded_with_its_aggregating_engine_replicated() -> None:
    local, distributed = for_cluster(ROLLUP, "prod")
    assert "ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/db/rpc_calls_1m_local', " \
           "'{replica}') PARTITION BY toYYYYMMDD(minute)" in local
    assert local.startswith("CREATE TABLE IF NOT EXISTS db.rpc_calls_1m_local ON CLUSTER prod (")
    assert distributed.endswith("ENGINE = Distributed(prod, db, rpc_calls_1m_local, rand())")


def test_a_view_reads_and_writes_the_local_tables() -> None:
    [view] = for_cluster(VIEW, "prod")
    assert view.startswith("CREATE MATERIALIZED VIEW IF NOT EXISTS db.rpc_calls_1m_mv ON CLUSTER prod "
                           "TO db.rpc_calls_1m_local AS\n")
    assert "\nFROM db.rpc_calls_local\n" in view


def test_a_small_table_is_replicated_to_every_node_keeping_its_engine_arguments() -> None:
    [table] = for_cluster(SMALL, "prod")
    assert table == ("CREATE TABLE IF NOT EXISTS db.registry_services ON CLUSTER prod (service String, "
                     "changed_ms UInt64) ENGINE = ReplicatedReplacingMergeTree("
                     "'/clickhouse/tables/all/db/registry_services', '{replica}', changed_ms) ORDER BY service")


def test_an_alter_changes_the_shard_tables_then_the_distributed_one() -> None:
    alter = "ALTER TABLE db.tcp_connections\n    ADD COLUMN outcome String DEFAULT '' AFTER duration_ms"
    assert for_cluster(alter, "prod") == [
        "ALTER TABLE db.tcp_connections_local ON CLUSTER prod ADD COLUMN outcome String DEFAULT '' AFTER duration_ms",
        "ALTER TABLE db.tcp_connections ON CLUSTER prod ADD COLUMN outcome String DEFAULT '' AFTER duration_ms",
    ]
    small = "ALTER TABLE db.registry_services ADD COLUMN signal String DEFAULT 'auto'"
    assert for_cluster(small, "prod") == [
        "ALTER TABLE db.registry_services ON CLUSTER prod ADD COLUMN signal String DEFAULT 'auto'"]


def test_every_migration_statement_has_a_rule_and_every_create_is_on_cluster() -> None:
    generated = all_generated()
    assert all(" ON CLUSTER prod " in statement for statement in generated)
    engines = re.findall(r"ENGINE = (\w+)", "\n".join(generated))
    assert set(engines) <= {"ReplicatedMergeTree", "ReplicatedAggregatingMergeTree",
                            "ReplicatedReplacingMergeTree", "Distributed"}
    for table in SHARDED:
        assert any(s.startswith(f"CREATE TABLE IF NOT EXISTS svcpulse.{table} ON CLUSTER prod AS "
                                f"svcpulse.{table}_local ENGINE = Distributed(") for s in generated)
    views = [s for s in generated if "MATERIALIZED VIEW" in s]
    assert views and all(re.search(r"TO svcpulse\.\w+_local AS", v) for v in views)
    assert all(re.search(r"FROM svcpulse\.\w+_local\b", v) for v in views)


def test_current_clickhouse_parses_every_generated_statement(chdb_store: Store) -> None:
    # Through the session's chdb store: chdb allows one data directory per process.
    for statement in [*all_generated(), create_database("svcpulse", "prod")]:
        ast = str(chdb_store.execute(f"EXPLAIN AST {statement}"))
        assert ("AlterQuery" if statement.startswith("ALTER") else "CreateQuery") in ast, statement


@pytest.mark.parametrize("bad", ["prod;DROP", "a b", "", "1x"])
def test_a_cluster_name_that_is_not_an_identifier_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="letters, digits and _ only"):
        for_cluster(RAW, bad)


def test_statements_without_a_rule_or_engine_are_refused() -> None:
    with pytest.raises(ValueError, match="no cluster rule"):
        for_cluster("DROP TABLE db.t", "prod")
    with pytest.raises(ValueError, match="no MergeTree-family engine"):
        replicated_engine("CREATE TABLE db.t (x UInt8) ENGINE = Log", "db", "t", sharded=False)


class RecordingStore:
    """Just enough of a Store to see what migrate sends (no server speaks ON CLUSTER without ZooKeeper)."""

    database, dialect = "svcpulse", "clickhouse"

    def __init__(self) -> None:
        self.statements: list[str] = []

    def create_database(self) -> None:
        self.statements.append("<create local database>")

    def execute(self, sql: str, params: object = None) -> list[tuple[int]]:
        self.statements.append(sql)
        return []

    def insert(self, table: str, columns: object, data: object) -> None:
        self.statements.append(f"<insert {table}>")


def test_migrate_sends_the_cluster_ddl_when_a_cluster_is_configured() -> None:
    store = RecordingStore()
    applied = migrate(store, log=False, cluster="prod")  # type: ignore[arg-type]
    sent = store.statements
    assert sent[:2] == ["<create local database>", "CREATE DATABASE IF NOT EXISTS svcpulse ON CLUSTER prod"]
    assert "ReplicatedMergeTree('/clickhouse/tables/all/svcpulse/schema_migrations'" in sent[2]
    assert [s for s in sent if s.startswith(("CREATE ", "ALTER "))][2:] == all_generated()
    assert sent.count("<insert schema_migrations>") == len(applied) == len(load_migrations())
