"""Writes to the control tables reach the weigh workers and every API replica through svcpulse.control.

The API's store is wrapped in `MirroringStore`: an insert into a control table (registry, overrides,
releases, held roles) goes to ClickHouse first, then the same rows are sent to the compacted topic
svcpulse.control (key = table + row key). The route's closing `record()` flushes them
(`ControlPublisher.flush`), so a write answered 200 is on the topic; if the broker does not take
it, the caller gets a 503 saying the change is stored but not yet in force (retrying is safe: rows
merge by changed_ms). Reads go straight to the store.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from core.kafka import KafkaClientError
from pipeline import topics
from pipeline.store import Store
from weigh.kafka import Producer, producer
from weights import control


class ControlUnavailable(RuntimeError):
    """The change is stored in ClickHouse but the broker did not take it: not in force yet."""


class ControlPublisher:
    def __init__(self, client: str, bootstrap: str) -> None:
        self.client, self.bootstrap = client, bootstrap
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def send(self, key: bytes, value: bytes) -> None:
        try:
            with self._lock:
                if self._producer is None:  # created on first use: the API starts without a broker
                    self._producer = producer(self.client, self.bootstrap)
                self._producer.produce(topics.CONTROL, value, key=key)
        except KafkaClientError as err:
            raise ControlUnavailable(self._message(err)) from err

    def send_row(self, table: str, row: Mapping[str, Any]) -> None:
        self.send(*control.encode_row(table, row))

    def flush(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            held = self._producer
        if held is None:
            return
        try:
            held.flush(timeout_s)  # raises DeliveryError for a row the broker did not acknowledge
        except KafkaClientError as err:
            raise ControlUnavailable(self._message(err)) from err

    def _message(self, err: Exception) -> str:
        return (f"the change is stored, but Kafka {self.bootstrap} did not take it for svcpulse.control ({err}); "
                "it is not in force yet: retry when the broker is back")

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(5)
                self._producer = None


class MirroringStore:
    """The store, with inserts into control tables also sent to svcpulse.control."""

    def __init__(self, store: Store, publisher: ControlPublisher) -> None:
        self.inner, self.publisher = store, publisher

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # query, execute, ping, dialect, database, ...

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        self.inner.insert(table, columns, data)
        if table in control.KEYS:
            for values in zip(*data, strict=True):
                self.publisher.send_row(table, dict(zip(columns, values, strict=True)))
