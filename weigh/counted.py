"""The worker's store, counting what it asks: proof that the control loop queries no ClickHouse in its
steady state (bench/freshness.py reads the counter; only the start-up snapshot and history inserts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.store import Store
from weigh import metrics


class CountedStore:
    def __init__(self, store: Store) -> None:
        self.inner = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        metrics.STORE_CALLS.labels("query").inc()
        return self.inner.query(sql, params)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        metrics.STORE_CALLS.labels("query").inc()
        return self.inner.execute(sql, params)

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        metrics.STORE_CALLS.labels("insert").inc()
        self.inner.insert(table, columns, data)
