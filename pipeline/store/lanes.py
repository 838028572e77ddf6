"""A caller's view of a store: which connections it uses (its lane) and the limits of its queries.

    reads = Lane(store, "read", QueryLimits(max_execution_s=20, max_memory_bytes=2 << 30, priority=10))
    control = Lane(store, CONTROL_LANE, QueryLimits(max_execution_s=10, priority=1))

Both are Stores; the API hands the first to its routes and the second to the control plane's own
statements (`control_lane`: the control tables read at start by weigh workers and API replicas,
weight_history, the lease holder's records), so a slow read can neither take the control plane's
connection (server store) nor run without bounds. Closing a lane does nothing: the store's owner
closes the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.store import CONTROL_LANE, QueryLimits, Store

READ_PRIORITY = 10  # ClickHouse pauses these while a query of a lower number runs
CONTROL_PRIORITY = 1


class Lane:
    def __init__(self, store: Store, name: str, limits: QueryLimits | None = None) -> None:
        self.store, self.name, self.limits = store, name, limits
        self.database, self.dialect = store.database, store.dialect
        self.json_inserts = None  # lanes read; only the loader inserts JSON lines

    def execute(self, sql: str, params: Mapping[str, Any] | None = None, *, lane: str = "",
                limits: QueryLimits | None = None) -> list[tuple[Any, ...]]:
        return self.store.execute(sql, params, lane=lane or self.name, limits=limits or self.limits)

    def query(self, sql: str, params: Mapping[str, Any] | None = None, *, lane: str = "",
              limits: QueryLimits | None = None) -> list[dict[str, Any]]:
        return self.store.query(sql, params, lane=lane or self.name, limits=limits or self.limits)

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]], *, lane: str = "") -> None:
        self.store.insert(table, columns, data, lane=lane or self.name)

    def create_database(self) -> None:
        self.store.create_database()

    def ping(self) -> None:
        self.execute("SELECT 1")

    def close(self) -> None:
        """The store's owner closes it."""


def control_lane(store: Store, timeout_s: float) -> Lane:
    """The control plane's lane: its own connection, ahead of every read, each statement within timeout_s."""
    return Lane(store, CONTROL_LANE, QueryLimits(timeout_s, priority=CONTROL_PRIORITY))
