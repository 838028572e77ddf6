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

from core.kafka import KafkaClientError, Message, TopicPartition, ensure_topics, open_consumer, open_producer
from pipeline import events, metrics
from pipeline.batch import Batch, columns
from pipeline.redelivery import RedeliveryGuard
from pipeline.store import Store, StoreError
from pipeline.topics import DLQ, LOADED_TOPICS, TABLE_BY_KIND
from pipeline.transform import COLUMNS, transform

log = logging.getLogger("svcpulse.loader")


@dataclass(frozen=True)
class LoaderConfig:
    bootstrap: str
    group_id: str = "svcpulse-loader"
    batch_rows: int = 100_000  # ClickHouse likes few large inserts ("too many parts" otherwise)
    batch_age_s: float = 1.0
    poll_timeout_ms: int = 200
    poll_records: int = 20_000  # messages one poll hands out at most
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    partitions: int = 4
    kafka_client: str = "kafka-python"  # or "confluent" (librdkafka), see core/kafka


class Loader:
    def __init__(self, config: LoaderConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.guard = RedeliveryGuard()
        self.batch = self._new_batch()
        self.stop_event = threading.Event()
        self._inserted: set[str] = set()  # kinds of the current batch already in the store
        ensure_topics(config.bootstrap, (*LOADED_TOPICS, DLQ), config.partitions)
        self.consumer = open_consumer(config.kafka_client, config.bootstrap, config.group_id)
        self.producer = open_producer(config.kafka_client, config.bootstrap, client_id=f"{config.group_id}-dlq")
        self.flushing = False
        self.rows_loaded = 0
        self._rate_mark = (time.monotonic(), 0)

    def _new_batch(self) -> Batch:
        return Batch(max_rows=self.config.batch_rows, max_age_s=self.config.batch_age_s)

    def run(self) -> None:
        """Load until stop() is called; then flush, commit and close."""
        self.consumer.subscribe(list(LOADED_TOPICS), self._assigned, self._revoked)
        log.info("loading %s from %s with %s", ", ".join(LOADED_TOPICS), self.config.bootstrap,
                 self.config.kafka_client)
        try:
            while not self.stop_event.is_set():
                self._take(self._poll())
                if self.batch.ready():
                    self.flush()
                self._update_lag()
            self.flush()
        finally:
            self.consumer.close()
            self.producer.close(10)

    def stop(self) -> None:
        self.stop_event.set()

    def _poll(self) -> list[Message]:
        try:
            return self.consumer.poll(self.config.poll_timeout_ms / 1000, self.config.poll_records)
        except KafkaClientError as err:  # the client reconnects by itself; do not spin meanwhile
            log.warning("poll failed (%s); polling again in 1 s", err)
            self.stop_event.wait(1.0)
            return []

    def _assigned(self, partitions: set[TopicPartition]) -> None:
        self.guard.assigned(partitions)
        log.info("assigned %s", sorted(f"{topic}[{partition}]" for topic, partition in partitions))

    def _revoked(self, partitions: set[TopicPartition]) -> None:
        if not self.flushing:  # during a retry the retry loop finishes the batch itself
            self.flush()  # commit what we hold while the partitions are still ours
        self.guard.revoked(partitions)

    def _take(self, records: list[Message]) -> None:
        for record in records:
            result = transform(record)
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
            except (StoreError, KafkaClientError) as err:
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
        """Keep polling (so the group keeps us) without taking records while the store recovers; a paused
        partition hands out nothing and loses nothing (core/kafka/abstract.py)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.consumer.pause(self.consumer.assignment())  # again each time: a rebalance resumes all
            self.consumer.poll(0.2)  # paused: returns nothing, keeps the group membership alive
        self.consumer.resume(self.consumer.assignment())

    def _write(self) -> None:
        for kind, rows in self.batch.rows.items():
            if kind in self._inserted:
                continue
            table = TABLE_BY_KIND[kind]
            fresh = self.guard.filter(self.store, table, rows)
            metrics.DUPLICATES.inc(len(rows) - len(fresh))
            if fresh:
                started = time.monotonic()
                self.store.insert(table, COLUMNS[kind], columns(fresh))
                metrics.INSERT_SECONDS.observe(time.monotonic() - started)
                metrics.ROWS.labels(table).inc(len(fresh))
                self.rows_loaded += len(fresh)
            self._inserted.add(kind)
        self._publish_dead_letters()
        if not self.consumer.commit({tp: offset + 1 for tp, offset in self.batch.offsets.items()}):
            # The group moved our partitions while we retried. The rows are in; the new owner is
            # redelivered them and its RedeliveryGuard skips them, so nothing is lost or doubled.
            log.warning("commit refused after a rebalance; the new owner skips these rows")
        metrics.BATCHES.inc()

    def _publish_dead_letters(self) -> None:
        for event in self.batch.dead_letters:
            key = f"{event['topic']}:{event['partition']}".encode()
            self.producer.produce(DLQ, events.encode("dlq", event), key=key)
            metrics.DEAD_LETTERS.labels(event["topic"]).inc()
        self.producer.flush(30)
        self.batch.dead_letters.clear()

    def _update_lag(self) -> None:
        now = time.monotonic()
        started, rows_then = self._rate_mark
        if now - started < 5:
            return
        metrics.ROWS_PER_SECOND.set((self.rows_loaded - rows_then) / (now - started))
        self._rate_mark = (now, self.rows_loaded)
        try:
            for topic, partition in self.consumer.assignment():
                position = self.consumer.position((topic, partition))
                _, high = self.consumer.watermarks((topic, partition))
                if position is not None:  # Tansu's high watermark trails by up to one batch: never below 0
                    metrics.LAG.labels(topic, str(partition)).set(max(0, high - position))
        except KafkaClientError as err:
            log.warning("consumer lag unknown: %s", err)

