"""Writing one batch: rows into the store (bisecting around rows it refuses), dead letters to the DLQ.

Guarantees: a row the store refuses for its data (StoreError.rejected: a value the column cannot
hold, text it cannot parse) does not block the others: the failing block is split in halves until
the refused rows stand alone; they go to the dead-letter topic with the store's own message as the
reason, and every other row is stored. Any other failure (store down, timeout, "too many parts")
propagates so the loader retries the whole batch; its redelivery guard then skips what is stored.
Dead-lettering is logged, at most one line per LOG_EVERY_S, with the count and the first reason.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from core.kafka import Producer
from pipeline import events, metrics
from pipeline.batch import Batch, columns
from pipeline.store import Store, StoreError
from pipeline.topics import DLQ, TABLE_BY_KIND, dead_letter_key
from pipeline.transform import COLUMNS, as_lines, is_line, transform

log = logging.getLogger("svcpulse.loader")
LOG_EVERY_S = 10.0

Row = tuple[Any, ...]


class DeadLetterLog:
    """Rate-limited log of dead-lettering: "N message(s) dead-lettered in T s; first: <reason>"."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._count, self._first, self._since = 0, "", time.monotonic()

    def add(self, reasons: list[str]) -> None:
        if reasons and not self._count:
            self._first = reasons[0]
        self._count += len(reasons)
        if self._count and time.monotonic() - self._since >= self.every_s:
            self.close()

    def close(self) -> None:
        """Log what was counted since the last line (at stop, so the tail of a burst is not lost)."""
        if self._count:
            log.warning("%d message(s) dead-lettered to %s in the last %.0f s; first reason: %s",
                        self._count, DLQ, time.monotonic() - self._since, self._first)
        self._count, self._since = 0, time.monotonic()


def insert_bisecting(store: Store, kind: str, rows: list[Row], batch: Batch) -> int:
    """Insert the rows; those the store refuses become dead letters in the batch. Returns rows stored."""
    try:
        _insert(store, kind, rows)
        return len(rows)
    except StoreError as err:
        if not err.rejected:
            batch.unsure.append((TABLE_BY_KIND[kind], rows))  # maybe raw rows stored without their rollup rows
            raise
        if len(rows) == 1:
            return _refused(store, kind, rows[0], batch, str(err))
    half = len(rows) // 2
    log.info("%s refused a block of %d %s rows; bisecting", store.dialect, len(rows), kind)
    return insert_bisecting(store, kind, rows[:half], batch) + insert_bisecting(store, kind, rows[half:], batch)


def _insert(store: Store, kind: str, rows: list[Row]) -> None:
    table = TABLE_BY_KIND[kind]
    if store.json_inserts:
        store.json_inserts.insert(table, COLUMNS[kind], as_lines(kind, rows))
    else:
        store.insert(table, COLUMNS[kind], columns(rows))


def _refused(store: Store, kind: str, row: Row, batch: Batch, store_message: str) -> int:
    """Dead-letter a row the store refused; a line row (the message's own bytes) first gets one more try
    as the row the judge makes of it, encoded by us: JSON the contract accepts but the server's parser
    does not (a key given twice, say) must not be dead-lettered for its spelling. Returns rows stored."""
    message = batch.message_of(row)
    if is_line(row):
        judged = transform(message)
        if isinstance(judged, tuple):
            return insert_bisecting(store, kind, [judged[1]], batch)
        batch.add_dead_letter(judged)
        return 0
    batch.add_dead_letter(events.dead_letter(f"the store refused the row: {store_message}", message.topic,
                                             message.partition, message.offset, message.value or b"",
                                             message.timestamp_ms))
    return 0


def publish_dead_letters(producer: Producer, batch: Batch, dead_log: DeadLetterLog) -> None:
    """Send the batch's dead letters (key = source topic:partition) and wait for the broker's acks."""
    if not batch.dead_letters:
        return
    for event in batch.dead_letters:
        producer.produce(DLQ, events.encode("dlq", event), key=dead_letter_key(event["topic"], event["partition"]))
    producer.flush(30)
    for event in batch.dead_letters:
        metrics.DEAD_LETTERS.labels(event["topic"]).inc()
    dead_log.add([event["reason"] for event in batch.dead_letters])
    batch.dead_letters.clear()
