"""The ClickHouse server store (native protocol, clickhouse-driver); works on 18.16 and current.

Small connection pools: a driver Client is one connection and cannot be shared across threads, so
each statement borrows one for its duration. Callers are kept apart by lane, each with its own
pool: the "control" lane (the weight loop) has one connection, every other lane (the API's heavy
"query" reads, its small "read"s of the registry and overrides, the loader's default) up to
`pool_size`, created on first use. So no number of slow queries can hold up the weight loop or an
operator's override. A statement that waits longer than POOL_WAIT_S for a connection of its lane
fails with a StoreError rather than hanging its caller.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as DriverError
from clickhouse_driver.errors import ServerException, TooLargeStringSize, TypeMismatchError

from pipeline.store import CONTROL_LANE, LIMIT_CODES, QueryLimits, StoreError, is_data_error, limit_error
from pipeline.store.http_insert import HttpInserts

POOL_WAIT_S = 10.0
# Raised while encoding a block client-side: the value does not fit its column; nothing was sent.
_ENCODE_ERRORS = (TypeMismatchError, TooLargeStringSize, TypeError, ValueError, OverflowError)

# What a server error means for an operator, where the server's own words are terse (a cluster's).
_HINTS = {
    242: "replicated tables are read-only: the server has no ZooKeeper session (ZooKeeper down or unreachable)",
    279: "no replica of a shard accepts connections (a whole shard is down)",
}


class _Pool:
    """At most `size` clients, created on first need, handed out one caller at a time."""

    def __init__(self, factory: Callable[[], Client], size: int) -> None:
        self._factory, self.size = factory, size
        self._idle: queue.LifoQueue[Client] = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()

    @contextmanager
    def client(self, wait_s: float) -> Iterator[Client]:
        found = self._take(wait_s)
        try:
            yield found
        finally:
            self._idle.put(found)

    def _take(self, wait_s: float) -> Client:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self.size:
                self._created += 1
                return self._factory()
        try:
            return self._idle.get(timeout=wait_s)
        except queue.Empty:
            raise StoreError(f"all {self.size} store connections stayed busy for {wait_s:g} s; "
                             "retry, or narrow the queries that hold them") from None

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().disconnect()
            except queue.Empty:
                return


class ClickHouseStore:
    dialect = "clickhouse"

    def __init__(self, host: str, port: int, database: str, user: str = "default", password: str = "",
                 timeout_s: float = 30.0, tls: dict[str, Any] | None = None, pool_size: int = 4,
                 alt_hosts: str = "", settings: Mapping[str, Any] | None = None, http_port: int = 0) -> None:
        self.database = database
        # The loader's JSON-lines inserts over HTTP (pipeline/store/http_insert.py) when the URL names the port.
        self.json_inserts = HttpInserts(host, http_port, database, user, password, timeout_s, settings) \
            if http_port else None
        self._options: dict[str, Any] = {
            "host": host, "port": port, "user": user, "password": password,
            "connect_timeout": 5, "send_receive_timeout": timeout_s, "sync_request_timeout": 5, **(tls or {}),
            # failover: on a refused connection the driver tries the next host and stays with it
            **({"alt_hosts": alt_hosts} if alt_hosts else {}), **({"settings": dict(settings)} if settings else {}),
        }
        self._pool_size = max(1, pool_size)
        self._pools: dict[str, _Pool] = {}
        self._pools_lock = threading.Lock()

    def _pool(self, lane: str) -> _Pool:
        with self._pools_lock:
            if lane not in self._pools:
                self._pools[lane] = _Pool(self._client, 1 if lane == CONTROL_LANE else self._pool_size)
            return self._pools[lane]

    def _client(self) -> Client:
        return Client(database=self.database, **self._options)

    def _where(self) -> str:
        return f"ClickHouse {self._options['host']}:{self._options['port']}"

    def _run(self, sql: str, params: Any = None, lane: str = "default", limits: QueryLimits | None = None,
             **kwargs: Any) -> Any:
        pool = self._pool(lane)
        settings = limits.settings() if limits else None
        with pool.client(POOL_WAIT_S) as client:
            try:
                return client.execute(sql, params, settings=settings, **kwargs)
            except (DriverError, OSError, EOFError, *_ENCODE_ERRORS) as err:
                client.disconnect()  # the next statement on this client reconnects, on a clean connection
                if isinstance(err, ServerException) and err.code in LIMIT_CODES:
                    raise limit_error(err.code, self._where(), limits) from err
                message = _describe(err)
                rejected = isinstance(err, _ENCODE_ERRORS) or (
                    isinstance(err, ServerException) and is_data_error(err.code, message))
                raise StoreError(f"{self._where()}: {message}", rejected=rejected) from err

    def execute(self, sql: str, params: Mapping[str, Any] | None = None, *, lane: str = "default",
                limits: QueryLimits | None = None) -> list[tuple[Any, ...]]:
        return list(self._run(sql, params, lane, limits))

    def query(self, sql: str, params: Mapping[str, Any] | None = None, *, lane: str = "default",
              limits: QueryLimits | None = None) -> list[dict[str, Any]]:
        rows, columns = self._run(sql, params, lane, limits, with_column_types=True)
        names = [name for name, _ in columns]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]], *,
               lane: str = "default") -> None:
        self._run(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", list(data), lane, columnar=True)

    def create_database(self) -> None:
        bootstrap = Client(database="default", **self._options)
        try:
            bootstrap.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        except (DriverError, OSError, EOFError) as err:
            raise StoreError(f"ClickHouse: cannot create database {self.database}: {err}") from err
        finally:
            bootstrap.disconnect()

    def ping(self) -> None:
        self._run("SELECT 1")

    def close(self) -> None:
        with self._pools_lock:
            for pool in self._pools.values():
                pool.close()


def _describe(err: Exception) -> str:
    """One line: the server's code and first message line (its str() puts the message on line 2)."""
    if isinstance(err, TooLargeStringSize):  # raised by the driver without a message
        return "a string is longer than its FixedString column (TooLargeStringSize)"
    if isinstance(err, ServerException):
        lines = (err.message or "").strip().splitlines()
        hint = f"{_HINTS[err.code]}: " if err.code in _HINTS else ""
        return f"{hint}Code: {err.code}. {lines[0] if lines else ''}"[:300 + len(hint)]
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__
