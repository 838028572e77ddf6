"""The embedded store: current ClickHouse in-process (chdb), data in one directory.

chdb allows one process per data directory; within it, chdb 4.x runs queries of several sessions
side by side. The store keeps a small pool of sessions (`chdb:///dir/db?pool=3`): a caller takes an
idle one for one statement, so the map's parallel count queries overlap instead of queueing behind
each other (a SELECT's limits bound how long it holds a session). Inserts go through Arrow (the
`Python()` table function), which is an order of magnitude faster than text formats.

chdb runs ClickHouse inside this process, with a server's cache sizes: 5 GiB each for marks, primary
indexes and skipping-index marks. They fill as data grows, so a long `svcpulse up` grew ~6 MB a minute
(docs/operations.md). The store caps them together at `cache_mb` (`chdb:///dir/db?cache_mb=128`).
"""

from __future__ import annotations

import contextlib
import queue
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow
from clickhouse_driver.util.escape import escape_params

from pipeline.store import LIMIT_CODES, QueryLimits, StoreError, is_data_error, limit_error

_CODE = re.compile(r"Code: (\d+)")
# Share of `cache_mb` per ClickHouse server cache (server settings, passed as startup arguments).
CACHE_SHARES = {"mark_cache_size": 0.5, "primary_index_cache_size": 0.25, "compiled_expression_cache_size": 0.125,
                "index_mark_cache_size": 0.0625, "query_condition_cache_size": 0.0625}
# What system.metrics says the in-process engine holds (`svcpulse_store_memory_bytes` on the API's /metrics).
MEMORY_METRICS = ("MemoryTracking", "MarkCacheBytes", "PrimaryIndexCacheBytes", "IndexMarkCacheBytes",
                  "QueryConditionCacheBytes", "CompiledExpressionCacheBytes", "UncompressedCacheBytes")
# chdb allocates through its own jemalloc, not the process's malloc: its summary line says what that
# allocator holds from the OS (resident) beside what is in use (allocated), which MemoryTracking does not.
JEMALLOC_SUMMARY = re.compile(r"Allocated: (\d+), active: \d+, metadata: \d+.*?resident: (\d+), mapped: \d+, "
                              r"retained: (\d+)")


def substitute(sql: str, params: Mapping[str, Any] | None) -> str:
    """clickhouse-driver's %(name)s substitution, done the way the driver does it client-side."""
    if not params:
        return sql
    return sql % escape_params(dict(params), None)


def _arrow(values: Sequence[Any]) -> pyarrow.Array:
    """A column as Arrow; a column of only empty lists gets an element type (list<null> cannot be converted)."""
    column = pyarrow.array(values)
    if pyarrow.types.is_list(column.type) and pyarrow.types.is_null(column.type.value_type):
        column = pyarrow.array(values, type=pyarrow.list_(pyarrow.int64()))
    return column


class ChdbStore:
    dialect = "chdb"
    json_inserts = None  # in-process: columns go in through Arrow, no text to parse

    def __init__(self, directory: str, database: str, pool_size: int = 3, cache_mb: int = 128) -> None:
        from chdb import session  # imported here: loading chdb costs ~0.5 s and 500 MB of mappings

        Path(directory).mkdir(parents=True, exist_ok=True)
        self.directory, self.database = directory, database
        self._sessions: list[Any] = []
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()  # the most recently used first: its caches are warm
        caps = "&".join(f"{name}={int(cache_mb * share * 2**20)}" for name, share in CACHE_SHARES.items())
        try:
            for _ in range(max(1, pool_size)):
                self._sessions.append(session.Session(f"{directory}?{caps}"))
        except Exception as err:  # chdb raises plain RuntimeErrors, e.g. "Cannot lock file"
            for opened in self._sessions:
                opened.close()
            raise StoreError(f"chdb at {directory}: {err}") from err
        self._sessions[0].query(f"CREATE DATABASE IF NOT EXISTS {database}")
        for chdb_session in self._sessions:
            # USE sticks for the session's later queries, so shared SQL names tables unqualified.
            chdb_session.query(f"USE {database}")
            self._idle.put(chdb_session)

    def _table(self, sql: str, limits: QueryLimits | None = None) -> pyarrow.Table:
        # chdb takes settings per query in the SQL (the server store sends them with the query); its
        # scheduler does not order sessions by priority, so that setting is left out.
        settings = {k: v for k, v in (limits.settings() if limits else {}).items() if k != "priority"}
        if settings and sql.lstrip()[:6].upper() == "SELECT":
            sql += " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in settings.items())
        if not self._sessions:
            raise StoreError("chdb: the store is closed")
        chdb_session = self._idle.get()
        try:
            try:
                result = chdb_session.query(sql, "ArrowTable")
            except Exception as err:  # chdb raises plain RuntimeErrors ("Code: 27. DB::Exception: ...")
                code = _CODE.search(str(err))
                if code and int(code[1]) in LIMIT_CODES:
                    # chdb 26.x: after a query stopped mid-run, the session's next Arrow result comes back
                    # corrupt ("Unexpected empty message in IPC file format"); a throwaway query absorbs it.
                    with contextlib.suppress(Exception):
                        chdb_session.query("SELECT 1", "ArrowTable")
                    raise limit_error(int(code[1]), "chdb", limits) from err
                raise _store_error(err) from err
        finally:
            self._idle.put(chdb_session)
        return result if isinstance(result, pyarrow.Table) else pyarrow.table({})

    def execute(self, sql: str, params: Mapping[str, Any] | None = None, *, lane: str = "default",
                limits: QueryLimits | None = None) -> list[tuple[Any, ...]]:
        table = self._table(substitute(sql, params), limits)
        return list(zip(*(column.to_pylist() for column in table.columns), strict=True))

    def query(self, sql: str, params: Mapping[str, Any] | None = None, *, lane: str = "default",
              limits: QueryLimits | None = None) -> list[dict[str, Any]]:
        return self._table(substitute(sql, params), limits).to_pylist()

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]], *,
               lane: str = "default") -> None:
        try:
            svcpulse_block = pyarrow.table(  # noqa: F841 (read by name)
                {name: _arrow(values) for name, values in zip(columns, data, strict=True)})
        except (pyarrow.ArrowException, OverflowError, TypeError) as err:  # a value Arrow cannot hold
            raise StoreError(f"chdb: {err}", rejected=True) from err
        names = ", ".join(columns)
        self.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM Python(svcpulse_block)")

    def create_database(self) -> None:
        """Created when the session opens (chdb needs no server round trip for it)."""

    def ping(self) -> None:
        self.execute("SELECT 1")

    def memory_bytes(self) -> dict[str, int]:
        """What the in-process engine holds now: tracked allocations and each cache, by system.metrics name,
        and its jemalloc's allocated, resident and retained bytes (`jemalloc_*`)."""
        names = ", ".join(f"'{name}'" for name in MEMORY_METRICS)
        held = {str(name): int(value)
                for name, value in self.execute(f"SELECT metric, value FROM system.metrics WHERE metric IN ({names})")}
        stats = self.execute("SELECT * FROM system.jemalloc_stats")
        summary = JEMALLOC_SUMMARY.search(str(stats[0][0])) if stats else None
        if summary:
            held.update(zip(("jemalloc_allocated", "jemalloc_resident", "jemalloc_retained"),
                            map(int, summary.groups()), strict=True))
        return held

    def close(self) -> None:
        """Close every session, each once no statement runs on it (a second call does nothing)."""
        sessions, self._sessions = self._sessions, []
        for _ in sessions:
            self._idle.get().close()


def _store_error(err: Exception) -> StoreError:
    message = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
    code = _CODE.search(message)
    return StoreError(f"chdb: {message}", rejected=is_data_error(int(code.group(1)) if code else None, message))
