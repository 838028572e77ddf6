"""The ClickHouse server store (native protocol, clickhouse-driver); works on 18.16 and current."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as DriverError
from clickhouse_driver.errors import ServerException, TooLargeStringSize, TypeMismatchError

from pipeline.store import StoreError, is_data_error

# Raised while encoding a block client-side: the value does not fit its column; nothing was sent.
_ENCODE_ERRORS = (TypeMismatchError, TooLargeStringSize, TypeError, ValueError, OverflowError)

# What a server error means for an operator, where the server's own words are terse (a cluster's).
_HINTS = {
    242: "replicated tables are read-only: the server has no ZooKeeper session (ZooKeeper down or unreachable)",
    279: "no replica of a shard accepts connections (a whole shard is down)",
}


class ClickHouseStore:
    dialect = "clickhouse"

    def __init__(self, host: str, port: int, database: str, user: str = "default", password: str = "",
                 timeout_s: float = 30.0, tls: dict[str, Any] | None = None, alt_hosts: str = "",
                 settings: Mapping[str, Any] | None = None) -> None:
        self.database = database
        self._options: dict[str, Any] = {
            "host": host, "port": port, "user": user, "password": password,
            "connect_timeout": 5, "send_receive_timeout": timeout_s, "sync_request_timeout": 5, **(tls or {}),
            # failover: on a refused connection the driver tries the next host and stays with it
            **({"alt_hosts": alt_hosts} if alt_hosts else {}), **({"settings": dict(settings)} if settings else {}),
        }
        self._lock = threading.Lock()  # a driver Client is one connection: not shareable across threads
        self._client = Client(database=database, **self._options)

    def _run(self, sql: str, params: Any = None, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return self._client.execute(sql, params, **kwargs)
            except (DriverError, OSError, EOFError, *_ENCODE_ERRORS) as err:
                self._client.disconnect()  # the next call reconnects
                message = _describe(err)
                rejected = isinstance(err, _ENCODE_ERRORS) or (
                    isinstance(err, ServerException) and is_data_error(err.code, message))
                raise StoreError(f"ClickHouse {self._options['host']}:{self._options['port']}: {message}",
                                 rejected=rejected) from err

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return list(self._run(sql, params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        rows, columns = self._run(sql, params, with_column_types=True)
        names = [name for name, _ in columns]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        self._run(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", list(data), columnar=True)

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
        with self._lock:
            self._client.disconnect()


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
