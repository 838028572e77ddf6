"""The loader: poll Kafka -> transform (pure) -> batch (size | age) -> insert -> commit offsets.

At-least-once with an exactly-once effect: offsets are committed only after the rows are in the
store and the dead letters are acknowledged by the broker; rows redelivered after a crash are
skipped by the RedeliveryGuard. When the store fails, every partition is paused (the consumer keeps
polling so it stays in its group), the same batch is retried with backoff, and loading resumes by
itself. SIGTERM/SIGINT finish the current batch, commit and leave the group.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition as KafkaTopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from pipeline import events, metrics
from pipeline.batch import Batch
from pipeline.kafka import ensure_topics, make_consumer, make_producer
from pipeline.redelivery import RedeliveryGuard
from pipeline.store import Store, StoreError
from pipeline.topics import DLQ, LOADED_TOPICS, TABLE_BY_KIND
from pipeline.transform import COLUMNS, Message, transform

log = logging.getLogger("svcpulse.loader")


@dataclass(frozen=True)
class LoaderConfig:
    bootstrap: str
    group_id: str = "svcpulse-loader"
    batch_rows: int = 100_000  # ClickHouse likes few large inserts ("too many parts" otherwise)
    batch_age_s: float = 1.0
    poll_timeout_ms: int = 200
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    partitions: int = 4


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loader: Loader) -> None:
        self.loader = loader

    def on_partitions_revoked(self, revoked: Any) -> None:
        if not self.loader.flushing:  # a rebalance during a retry: the retry loop finishes the batch
            self.loader.flush()  # commit what we hold while the partitions are still ours
        self.loader.guard.revoked({(tp.topic, tp.partition) for tp in revoked})

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.loader.guard.assigned({(tp.topic, tp.partition) for tp in assigned})
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class Loader:
    def __init__(self, config: LoaderConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.guard = RedeliveryGuard()
        self.batch = self._new_batch()
        self.stop_event = threading.Event()
        self._inserted: set[str] = set()  # kinds of the current batch already in the store
        ensure_topics(config.bootstrap, (*LOADED_TOPICS, DLQ), config.partitions)
        self.consumer = make_consumer(config.bootstrap, config.group_id)
        self.producer = make_producer(config.bootstrap)
        self.flushing = False
        self.rows_loaded = 0
        self._rate_mark = (time.monotonic(), 0)

    def _new_batch(self) -> Batch:
        return Batch(max_rows=self.config.batch_rows, max_age_s=self.config.batch_age_s)

    def run(self) -> None:
        """Load until stop() is called; then flush, commit and close."""
        self.consumer.subscribe(list(LOADED_TOPICS), listener=_Rebalance(self))
        log.info("loading %s from %s", ", ".join(LOADED_TOPICS), self.config.bootstrap)
        try:
            while not self.stop_event.is_set():
                polled = self.consumer.poll(timeout_ms=self.config.poll_timeout_ms)
                for records in polled.values():
                    self._take(records)
                if self.batch.ready():
                    self.flush()
                self._update_lag()
            self.flush()
        finally:
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=10)

    def stop(self) -> None:
        self.stop_event.set()

    def _take(self, records: list[Any]) -> None:
        for record in records:
            message = Message(record.topic, record.partition, record.offset, record.timestamp, record.value)
            result = transform(message)
            if isinstance(result, tuple):
                self.batch.add_row(*result)
            else:
                self.batch.add_dead_letter(result)
            self.batch.mark(record.topic, record.partition, record.offset)

    def flush(self) -> None:
        """Insert the batch, publish its dead letters, commit its offsets; retry until done or stopped."""
        if self.batch.empty or self.flushing:
            return
        self.flushing = True
        backoff = self.config.backoff_initial_s
        while True:
            try:
                self._write()
                break
            except (StoreError, KafkaError) as err:
                metrics.INSERT_FAILURES.inc()
                metrics.PAUSED.set(1)
                log.warning("write failed (%s); retrying in %.1f s with partitions paused", err, backoff)
                self._wait_paused(backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
        metrics.PAUSED.set(0)
        self.batch = self._new_batch()
        self._inserted.clear()
        self.flushing = False

    def _wait_paused(self, seconds: float) -> None:
        """Keep polling (so the group keeps us) without taking records while the store recovers."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.consumer.pause(*self.consumer.assignment())  # re-paused: a rebalance may add partitions
            for tp, records in self.consumer.poll(timeout_ms=200).items():
                self.consumer.seek(tp, records[0].offset)  # not taken now: read again after the pause
        self.consumer.resume(*self.consumer.paused())

    def _write(self) -> None:
        for kind, rows in self.batch.rows.items():
            if kind in self._inserted:
                continue
            table = TABLE_BY_KIND[kind]
            fresh = self.guard.filter(self.store, table, rows)
            metrics.DUPLICATES.inc(len(rows) - len(fresh))
            if fresh:
                started = time.monotonic()
                self.store.insert(table, COLUMNS[kind], [list(c) for c in zip(*fresh, strict=True)])
                metrics.INSERT_SECONDS.observe(time.monotonic() - started)
                metrics.ROWS.labels(table).inc(len(fresh))
                self.rows_loaded += len(fresh)
            self._inserted.add(kind)
        self._publish_dead_letters()
        try:
            self.consumer.commit({
                KafkaTopicPartition(topic, partition): OffsetAndMetadata(offset + 1, "", -1)
                for (topic, partition), offset in self.batch.offsets.items()
            })
        except CommitFailedError as err:
            # The group moved our partitions while we retried. The rows are in; the new owner is
            # redelivered them and its RedeliveryGuard skips them, so nothing is lost or doubled.
            log.warning("commit refused after a rebalance (%s); the new owner skips these rows", err)
        metrics.BATCHES.inc()

    def _publish_dead_letters(self) -> None:
        for event in self.batch.dead_letters:
            key = f"{event['topic']}:{event['partition']}".encode()
            self.producer.send(DLQ, key=key, value=events.encode("dlq", event))
            metrics.DEAD_LETTERS.labels(event["topic"]).inc()
        self.producer.flush(timeout=30)
        self.batch.dead_letters.clear()

    def _update_lag(self) -> None:
        now = time.monotonic()
        started, rows_then = self._rate_mark
        if now - started < 5:
            return
        metrics.ROWS_PER_SECOND.set((self.rows_loaded - rows_then) / (now - started))
        self._rate_mark = (now, self.rows_loaded)
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                position = self.consumer.position(tp, timeout_ms=1000) or 0
                metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))

