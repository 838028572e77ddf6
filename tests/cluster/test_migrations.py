"""Every migration, 0001 to the last, in its cluster form on the real cluster: what each server ends up
with, re-running changes nothing, a migration added later reaches every server, and an applied
migration whose file changed is refused. This is the CI check that generated DDL and reality agree."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cluster import SHARDED
from pipeline.ddl import CreateTable, parse
from pipeline.migrate import MIGRATIONS_DIR, MigrationChanged, load_migrations, migrate
from pipeline.store import Store
from svcpulse.cluster_services import CLUSTER, LocalCluster
from tests.cluster.helpers import heal, migrated_database, node_store, sync_replicas

_SCHEMA_SQL = ("SELECT name, engine, create_table_query FROM system.tables WHERE database = %(db)s "
               "ORDER BY name")


def declared_tables(database: str) -> list[str]:
    """Every table the migrations create, by its single-server name."""
    return [statement.name.table for m in load_migrations() for text in m.statements(database)
            if isinstance(statement := parse(text), CreateTable)]


def schema_everywhere(cluster: LocalCluster, database: str) -> dict[str, list[tuple[str, str, str]]]:
    found = {}
    for node in cluster.nodes:
        with node_store(node) as store:
            found[node.workdir.name] = [tuple(row) for row in store.execute(_SCHEMA_SQL, {"db": database})]
    return found


@pytest.fixture(scope="module")
def migrated(local_cluster: LocalCluster) -> Iterator[Store]:
    """One migrated database for the tests here that only read it (a migration ON CLUSTER takes seconds)."""
    heal(local_cluster)
    with migrated_database(local_cluster) as store:
        yield store


def test_every_migration_builds_the_same_schema_on_every_server(cluster: LocalCluster, migrated: Store) -> None:
    database = migrated.database
    schemas = schema_everywhere(cluster, database)
    first = schemas["s1r1"]
    assert all(schema == first for schema in schemas.values()), "servers disagree on the schema"
    engines = {name: engine for name, engine, _ in first}
    for table in declared_tables(database):
        if table in SHARDED:
            assert engines[table] == "Distributed" and engines[f"{table}_local"].startswith("Replicated"), table
        else:
            assert engines[table].startswith("Replicated"), table
    views = [name for name, engine, _ in first if engine == "MaterializedView"]
    assert views and all("_local" in query.split(" AS SELECT")[0] for name, _, query in first if name in views)
    # Each shard's replicas share one ZooKeeper path per sharded table; small tables share one path everywhere.
    with node_store(cluster.node(2, 2)) as store:
        paths = dict(store.execute("SELECT table, zookeeper_path FROM system.replicas WHERE database = %(db)s",
                                   {"db": database}))
    assert paths["rpc_calls_local"] == f"/clickhouse/tables/2/{database}/rpc_calls_local"
    assert paths["registry_services"] == f"/clickhouse/tables/all/{database}/registry_services"


def test_migrating_again_changes_nothing(cluster: LocalCluster, migrated: Store) -> None:
    before = schema_everywhere(cluster, migrated.database)
    assert migrate(migrated, log=False, cluster=CLUSTER) == []
    assert schema_everywhere(cluster, migrated.database) == before
    versions = migrated.execute("SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == [m.version for m in load_migrations()]


LATER = """-- added after the cluster was built: a column on a sharded table, a new small table
ALTER TABLE $db.rpc_calls ADD COLUMN region String DEFAULT 'eu';
CREATE TABLE IF NOT EXISTS $db.later_notes (k String, changed_ms UInt64)
ENGINE = ReplacingMergeTree(changed_ms) ORDER BY k;
"""


def test_a_migration_added_later_applies_on_every_server(cluster: LocalCluster, cluster_store: Store,
                                                          tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "9999_later.sql").write_text(LATER)
    cluster_store.insert("rpc_calls", ["ts", "callee", "_partition", "_offset"], [[1_764_000_000], ["a"], [0], [1]])
    applied = migrate(cluster_store, log=False, cluster=CLUSTER, directory=directory)
    assert [m.name for m in applied] == ["later"]
    for node in cluster.nodes:
        with node_store(node, cluster_store.database) as store:
            for table in ("rpc_calls", "rpc_calls_local"):
                columns = [name for (name,) in store.execute(f"SELECT name FROM system.columns WHERE "
                                                             f"database = currentDatabase() AND table = '{table}'")]
                assert columns[-1] == "region", (node.workdir.name, table)
            assert store.execute("EXISTS TABLE later_notes") == [(1,)], node.workdir.name
    # the new column works through the re-created Distributed table, and the row from before is still there
    cluster_store.insert("rpc_calls", ["ts", "callee", "_partition", "_offset", "region"],
                         [[1_764_000_000], ["b"], [0], [2], ["us"]])
    assert cluster_store.execute("SELECT callee, region FROM rpc_calls ORDER BY callee") == [("a", "eu"), ("b", "us")]
    cluster_store.insert("later_notes", ["k", "changed_ms"], [["x"], [1]])
    sync_replicas(cluster, cluster_store.database)
    for node in cluster.nodes:  # a small table is whole on every server
        with node_store(node, cluster_store.database) as store:
            assert store.execute("SELECT k FROM later_notes") == [("x",)], node.workdir.name
    assert migrate(cluster_store, log=False, cluster=CLUSTER, directory=directory) == []


def test_an_applied_migration_whose_file_changed_is_refused(migrated: Store, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    edited = sorted(directory.glob("0002_*.sql"))[0]
    edited.write_text(edited.read_text().replace("toStartOfMinute(ts) AS minute", "toStartOfFiveMinute(ts) AS minute"))
    with pytest.raises(MigrationChanged, match=r"0002_minute_rollups \(applied \w{16}, file now \w{16}\).*new "
                                               r"migration"):
        migrate(migrated, log=False, cluster=CLUSTER, directory=directory)
