"""Numbered plain-SQL migrations (pipeline/migrations/NNNN_name.sql) applied in order, each recorded.

`$db` in a file stands for the store's database. A file holds statements separated by `;` at the
end of a line. Re-running is a no-op: applied versions are read from `schema_migrations` first.
Each applied migration's checksum is recorded, and an applied migration whose file changed since is
an error (MigrationChanged): a schema already built from the old text would silently differ from a
new one built from the new text. Change a schema with a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
import string
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline import cluster as cluster_ddl
from pipeline.store import Store

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationChanged(ValueError):
    """An applied migration's file no longer has the text it was applied with."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def statements(self, database: str) -> list[str]:
        text = string.Template(self.sql).substitute(db=database)
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        return [part.strip() for part in re.split(r";\s*$", text, flags=re.MULTILINE) if part.strip()]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name}: expected NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return found


def _run(store: Store, statement: str, cluster: str) -> None:
    for each in cluster_ddl.for_cluster(statement, cluster) if cluster else [statement]:
        store.execute(each)


def applied_checksums(store: Store, cluster: str = "") -> dict[int, str]:
    """version -> checksum of every applied migration (creating the record table when missing)."""
    _run(store, f"CREATE TABLE IF NOT EXISTS {store.database}.schema_migrations "
         "(version UInt32, name String, checksum String, applied_at DateTime) "
         "ENGINE = MergeTree ORDER BY version", cluster)
    return {int(version): str(checksum) for version, checksum in
            store.execute("SELECT version, argMax(checksum, applied_at) FROM schema_migrations GROUP BY version")}


def check_unchanged(migrations: list[Migration], applied: dict[int, str]) -> None:
    """MigrationChanged naming every applied migration whose file differs from what was applied."""
    changed = [m for m in migrations if m.version in applied and applied[m.version] != m.checksum]
    if changed:
        names = ", ".join(f"{m.label} (applied {applied[m.version]}, file now {m.checksum})" for m in changed)
        raise MigrationChanged(f"applied migration(s) changed since they ran: {names}. Restore the file(s) "
                               "(git log -p pipeline/migrations) and put the change in a new migration")


def migrate(store: Store, log: bool = True, cluster: str = "",
            directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply the pending migrations in order; returns what was applied (empty when up to date).

    With `cluster` (a ClickHouse server's remote_servers name) every statement runs in its cluster
    form (pipeline/cluster.py): ON CLUSTER, Replicated engines, Distributed tables over sharded ones.
    """
    store.create_database()
    if cluster:
        store.execute(cluster_ddl.create_database(store.database, cluster))
    migrations = load_migrations(directory)
    done = applied_checksums(store, cluster)
    check_unchanged(migrations, done)
    where = f"{store.dialect}:{store.database}" + (f" on cluster {cluster}" if cluster else "")
    applied = []
    for migration in migrations:
        if migration.version in done:
            continue
        if log:
            print(f"[migrate] {migration.label} on {where}", flush=True)
        for statement in migration.statements(store.database):
            _run(store, statement, cluster)
        store.insert("schema_migrations", ["version", "name", "checksum", "applied_at"],
                     [[migration.version], [migration.name], [migration.checksum], [int(time.time())]])
        applied.append(migration)
    if log and not applied:
        print(f"[migrate] {where} is up to date ({len(done)} migrations applied)")
    return applied
