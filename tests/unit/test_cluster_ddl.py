"""Cluster DDL (pipeline/ddl.py objects, pipeline/cluster.py forms): exact text for each rule, every
migration covered, the placement facts checked against the migrations, and every generated statement
accepted by current ClickHouse's parser (chdb, EXPLAIN AST). tests/cluster runs them on a real cluster."""

from __future__ import annotations

import re

import pytest

from pipeline.cluster import SHARDED, create_database, for_cluster
from pipeline.ddl import AlterTable, CreateTable, CreateView, DdlError, DropTable, Name, parse
from pipeline.migrate import load_migrations, migrate
from pipeline.store import Store

RAW = ("CREATE TABLE IF NOT EXISTS db.rpc_calls (ts DateTime, _partition UInt32, _offset UInt64) "
       "ENGINE = MergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (callee, ts)")
ROLLUP = ("CREATE TABLE IF NOT EXISTS db.rpc_calls_1h (hour DateTime, calls AggregateFunction(count)) "
          "ENGINE = AggregatingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY hour")
VIEW = ("CREATE MATERIALIZED VIEW IF NOT EXISTS db.rpc_calls_1m_mv TO db.rpc_calls_1m AS\n"
        "SELECT toStartOfMinute(ts) AS minute, countState() AS calls\nFROM db.rpc_calls\nGROUP BY minute")
SMALL = ("CREATE TABLE IF NOT EXISTS db.registry_services (service String, changed_ms UInt64) "
         "ENGINE = ReplacingMergeTree(changed_ms) ORDER BY service")


def all_generated(cluster: str = "prod") -> list[str]:
    return [out for m in load_migrations() for statement in m.statements("svcpulse")
            for out in for_cluster(statement, cluster)]


def test_statements_parse_into_objects_that_know_quotes_and_parentheses() -> None:
    table = parse("CREATE TABLE IF NOT EXISTS db.t (a String DEFAULT ')(', b Nullable(Float64)) "
                  "ENGINE = ReplacingMergeTree(changed_ms) ORDER BY (a)")
    assert table == CreateTable(Name("db", "t"), "a String DEFAULT ')(', b Nullable(Float64)",
                                "ReplacingMergeTree", "changed_ms", "ORDER BY (a)")
    view = parse("CREATE MATERIALIZED VIEW db.v TO db.t AS SELECT 'FROM db.fake' AS s FROM db.src JOIN db.other "
                 "USING k")
    assert isinstance(view, CreateView) and view.target == Name("db", "t")
    assert [name for _, _, name in view.sources] == [Name("db", "src"), Name("db", "other")]
    assert parse("ALTER TABLE db.t ADD COLUMN x UInt8") == AlterTable(Name("db", "t"), "ADD COLUMN x UInt8")
    assert parse("DROP VIEW IF EXISTS db.v") == DropTable(Name("db", "v"), "VIEW")


def test_a_raw_table_becomes_a_replicated_local_table_and_a_distributed_one() -> None:
    local, distributed = for_cluster(RAW, "prod")
    assert local == ("CREATE TABLE IF NOT EXISTS db.rpc_calls_local ON CLUSTER prod (ts DateTime, _partition UInt32, "
                     "_offset UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/rpc_calls_local', "
                     "'{replica}') PARTITION BY toYYYYMMDD(ts) ORDER BY (callee, ts)")
    assert distributed == ("CREATE TABLE IF NOT EXISTS db.rpc_calls ON CLUSTER prod AS db.rpc_calls_local "
                           "ENGINE = Distributed(prod, db, rpc_calls_local, cityHash64(_partition, _offset))")


def test_a_rollup_has_no_sharding_key_so_only_its_views_write_it() -> None:
    # The bug a real cluster found: the hourly rollup got the raw tables' key, over columns it lacks.
    local, distributed = for_cluster(ROLLUP, "prod")
    assert "ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/db/rpc_calls_1h_local', " \
           "'{replica}') PARTITION BY toYYYYMMDD(hour)" in local
    assert distributed.endswith("ENGINE = Distributed(prod, db, rpc_calls_1h_local)")


def test_every_sharding_key_names_columns_of_its_table() -> None:
    columns = {statement.name.table: statement.columns for m in load_migrations()
               for text in m.statements("db") if isinstance(statement := parse(text), CreateTable)}
    for table, placement in SHARDED.items():
        used = set(re.findall(r"\b(_?[a-z][a-z0-9_]*)\b(?!\()", placement.key or "")) - {"cityHash64"}
        assert all(re.search(rf"\b{name}\b", columns[table]) for name in used), (table, placement.key)


def test_every_table_loaded_from_kafka_is_sharded_with_a_key() -> None:
    # A new raw table (one with Kafka coordinates) must be declared in SHARDED, or it would be copied whole
    # to every server; rollups fed by views from sharded tables must be sharded too.
    for m in load_migrations():
        for text in m.statements("db"):
            statement = parse(text)
            where = f"{m.label}: declare {{}} in pipeline/cluster.py SHARDED"
            if isinstance(statement, CreateTable) and "_offset UInt64" in statement.columns:
                placement = SHARDED.get(statement.name.table)
                assert placement and placement.key, where.format(f"{statement.name.table} with a sharding key")
            if (isinstance(statement, CreateView) and statement.target
                    and any(source.table in SHARDED for _, _, source in statement.sources)):
                assert statement.target.table in SHARDED, where.format(f"{statement.target.table} (key None: "
                                                                       "its view writes it on each shard)")


def test_a_view_reads_and_writes_the_local_tables() -> None:
    [view] = for_cluster(VIEW, "prod")
    assert view.startswith("CREATE MATERIALIZED VIEW IF NOT EXISTS db.rpc_calls_1m_mv ON CLUSTER prod "
                           "TO db.rpc_calls_1m_local AS SELECT")
    assert "\nFROM db.rpc_calls_local\n" in view
    [plain] = for_cluster("CREATE VIEW db.recent AS SELECT * FROM db.rpc_calls", "prod")
    assert plain == "CREATE VIEW IF NOT EXISTS db.recent ON CLUSTER prod AS SELECT * FROM db.rpc_calls"


def test_a_small_table_is_replicated_to_every_node_keeping_its_engine_arguments() -> None:
    [table] = for_cluster(SMALL, "prod")
    assert table == ("CREATE TABLE IF NOT EXISTS db.registry_services ON CLUSTER prod (service String, "
                     "changed_ms UInt64) ENGINE = ReplicatedReplacingMergeTree("
                     "'/clickhouse/tables/all/db/registry_services', '{replica}', changed_ms) ORDER BY service")


def test_a_column_change_on_a_sharded_table_recreates_its_distributed_table() -> None:
    assert for_cluster("ALTER TABLE db.rpc_calls ADD COLUMN region String", "prod") == [
        "ALTER TABLE db.rpc_calls_local ON CLUSTER prod ADD COLUMN region String",
        "DROP TABLE IF EXISTS db.rpc_calls ON CLUSTER prod",
        "CREATE TABLE IF NOT EXISTS db.rpc_calls ON CLUSTER prod AS db.rpc_calls_local "
        "ENGINE = Distributed(prod, db, rpc_calls_local, cityHash64(_partition, _offset))"]
    # A table replicated to every server replicates its own column change: one plain ALTER, not one
    # per shard (the second would find the column there already).
    assert for_cluster("ALTER TABLE db.audit_log ADD COLUMN ip String", "prod") == [
        "ALTER TABLE db.audit_log ADD COLUMN ip String"]
    assert for_cluster("DROP TABLE IF EXISTS db.rpc_calls_1m", "prod") == [
        "DROP TABLE IF EXISTS db.rpc_calls_1m ON CLUSTER prod",
        "DROP TABLE IF EXISTS db.rpc_calls_1m_local ON CLUSTER prod"]


def test_every_migration_statement_has_a_cluster_form_and_every_statement_is_on_cluster() -> None:
    generated = all_generated()
    replicated_alters = [s for s in generated if s.startswith("ALTER") and " ON CLUSTER " not in s]
    assert replicated_alters == ["ALTER TABLE svcpulse.registry_services ADD COLUMN signal String DEFAULT 'auto' "
                                 "AFTER description"]
    others = [s for s in generated if s not in replicated_alters]
    assert all(re.search(r" ON CLUSTER prod( |$)", statement) for statement in others)
    engines = re.findall(r"ENGINE = (\w+)", "\n".join(generated))
    assert set(engines) <= {"ReplicatedMergeTree", "ReplicatedAggregatingMergeTree",
                            "ReplicatedReplacingMergeTree", "ReplicatedSummingMergeTree", "Distributed"}
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
        assert "CreateQuery" in ast or "AlterQuery" in ast or "DropQuery" in ast, statement


@pytest.mark.parametrize("bad", ["prod;DROP", "a b", "", "1x"])
def test_a_cluster_name_that_is_not_an_identifier_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="letters, digits and _ only"):
        for_cluster(RAW, bad)


def test_statements_without_an_object_form_or_a_replicated_engine_are_refused() -> None:
    with pytest.raises(DdlError, match="no object form"):
        for_cluster("INSERT INTO db.t SELECT 1", "prod")
    with pytest.raises(DdlError, match=r"expected database.table"):
        for_cluster("CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x", "prod")
    with pytest.raises(ValueError, match="engine Log has no replicated form"):
        for_cluster("CREATE TABLE db.t (x UInt8) ENGINE = Log", "prod")
    with pytest.raises(DdlError, match="give it TO <table>"):
        for_cluster("CREATE MATERIALIZED VIEW db.v ENGINE = MergeTree ORDER BY x AS SELECT 1 AS x", "prod")


class RecordingStore:
    """Just enough of a Store to see what migrate sends (tests/cluster runs it on a real cluster)."""

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
    assert [s for s in sent if not s.startswith(("<", "SELECT"))][2:] == all_generated()
    assert sent.count("<insert schema_migrations>") == len(applied) == len(load_migrations())
