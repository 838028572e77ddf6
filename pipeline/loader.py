"""The loader: poll Kafka -> transform (pure) -> batch (size | age) -> insert -> commit offsets.

At-least-once with an exactly-once effect: offsets are committed only after the rows are in the
store and the dead letters are acknowledged by the broker; rows redelivered after a crash or a
failed attempt are skipped by the RedeliveryGuard. Events outside the contract, or outside the
plausibility window around now, are dead-lettered; rows the store itself refuses are found by
bisection and dead-lettered with the store's message (pipeline/writer.py), so one bad event never
blocks the rest. When the store is down, every partition is paused (the consumer keeps polling so it
stays in its group), the batch is retried with backoff and loading resumes by itself.
SIGTERM/SIGINT: the current batch gets one more attempt; if it fails the loader leaves without
committing it (the next owner loads it), so a stop takes at most one attempt (the store timeout).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from itertools import groupby
from operator import itemgetter

from core.kafka import KafkaClientError, Message, TopicPartition, ensure_topics, open_consumer, open_producer
from pipeline import events, metrics, progress
from pipeline.batch import Batch
from pipeline.gaps import GapGuard, Verdict
from pipeline.line_streams import LineStreams
from pipeline.loader_config import FETCH_MAX_WAIT_MS, GC_THRESHOLDS, LoaderConfig
from pipeline.redelivery import RedeliveryGuard
from pipeline.rollup_repair import RollupRepair
from pipeline.store import Store, StoreError
from pipeline.topics import DLQ, LOADED_TOPICS, TABLE_BY_KIND
from pipeline.transform import transform, transform_run
from pipeline.writer import DeadLetterLog, insert_bisecting, publish_dead_letters

log = logging.getLogger("svcpulse.loader")
_PARTITION, _OFFSET = itemgetter(0, 1), itemgetter(2)  # of a Message: (topic, partition), offset
class Loader:
    def __init__(self, config: LoaderConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.guard = RedeliveryGuard()
        self.gaps = GapGuard()
        # On a cluster: checks (and repairs) the rollup rows of blocks whose insert failed mid-way; None on
        # one server, where nothing changes (pipeline/rollup_repair.py).
        self.repair: RollupRepair | None = None
        self.batch = self._new_batch()
        self.stop_event = threading.Event()
        self.progress = progress.Progress(config.stall_s)
        self.dead_log = DeadLetterLog()
        # A store that takes JSON lines (a server with http_port): rows stream to it while a batch is taken,
        # and a batch whose rows all went that way is settled (answers read, offsets committed) only at the
        # next flush, so the server writes it while the loader takes the next (`pending`).
        self.streams = self._new_streams()
        self.pending: tuple[Batch, LineStreams] | None = None
        ensure_topics(config.bootstrap, (*LOADED_TOPICS, DLQ), config.partitions)
        self.consumer = open_consumer(config.kafka_client, config.bootstrap, config.group_id,
                                      fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        self.producer = open_producer(config.kafka_client, config.bootstrap, client_id=f"{config.group_id}-dlq")
        self.flushing = False
        self.rows_loaded = 0
        self._rate_mark = (time.monotonic(), 0)

    def _new_batch(self) -> Batch:
        return Batch(max_rows=self.config.batch_rows, max_age_s=self.config.batch_age_s)

    def _new_streams(self) -> LineStreams | None:
        return LineStreams(self.store.json_inserts) if self.store.json_inserts else None

    def run(self) -> None:
        """Load until stop() is called; then flush, commit and close."""
        gc.set_threshold(*GC_THRESHOLDS)
        progress.register_local(self.config.bootstrap, self.config.group_id, self.progress)
        self.consumer.subscribe(list(LOADED_TOPICS), self._assigned, self._revoked)
        log.info("loading %s from %s with %s", ", ".join(LOADED_TOPICS), self.config.bootstrap,
                 self.config.kafka_client)
        try:
            while not self.stop_event.is_set():
                records = self._poll()
                self._take(records)
                if self.batch.ready(drained=not records):
                    self.flush(defer=True)
                elif self.pending and not records:  # nothing more is coming for now: settle what is in
                    self._settle_pending()
                if self.repair:
                    self.repair.tick()
                self._update_lag()
            self.flush()
        finally:
            if self.repair:
                self.repair.close()
            progress.register_local(self.config.bootstrap, self.config.group_id, None)
            self.dead_log.close()
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
        self.gaps.forget(partitions)
        log.info("assigned %s", sorted(f"{topic}[{partition}]" for topic, partition in partitions))

    def _revoked(self, partitions: set[TopicPartition]) -> None:
        if not self.flushing:  # during a retry the retry loop finishes the batch itself
            self.flush()  # commit what we hold while the partitions are still ours
        self.guard.revoked(partitions)
        self.gaps.forget(partitions)

    def _take(self, records: list[Message]) -> None:
        window = events.plausible_window(time.time_ns() // 1_000_000, self.config.max_age_s,
                                         self.config.max_future_s)
        refetching: set[TopicPartition] = set()
        for where, grouped in groupby(records, key=_PARTITION):
            run = list(grouped)
            offsets = list(map(_OFFSET, run))
            if offsets != list(range(offsets[0], offsets[0] + len(run))):  # a hole inside: one by one
                self._take_each(run, window, refetching)
            elif where not in refetching and self._in_sequence(where, offsets[0], refetching):
                self.gaps.taken_through(where, offsets[-1])
                self._take_run(run, window)

    def _take_run(self, run: list[Message], window: events.TimeWindow) -> None:
        """Consecutive records of one partition: together when the fast path vouches for all of them."""
        made = transform_run(run, window, lines=self.streams is not None)
        if made is not None:
            kind, rows = made
            if self.streams and self._send_now(kind, rows):
                self.batch.add_sent(kind, run)
            else:
                self.batch.add_rows(kind, rows, run)
        else:
            for record in run:
                self._add(transform(record, window), record)
        self.batch.mark(run[0].topic, run[0].partition, run[-1].offset)

    def _send_now(self, kind: str, rows: list[tuple]) -> bool:
        """Send rows of one partition before the flush, if the redelivery guard lets them go: it has stopped
        checking the partition, or stops now. Rows it finds stored already are dropped from `rows`."""
        where = (rows[0][-4], rows[0][-3])
        if where in self.guard.checking:
            try:
                fresh = self.guard.filter(self.store, TABLE_BY_KIND[kind], rows)
            except StoreError:
                return False  # the flush checks them (and retries) as before
            metrics.DUPLICATES.inc(len(rows) - len(fresh))
            rows[:] = fresh
            if where in self.guard.checking or not rows:
                return False
        return self.streams is not None and self.streams.send(kind, rows)

    def _take_each(self, run: list[Message], window: events.TimeWindow, refetching: set[TopicPartition]) -> None:
        for record in run:
            where = (record.topic, record.partition)
            if where in refetching or not self._in_sequence(where, record.offset, refetching):
                continue
            self._add(transform(record, window), record)
            self.batch.mark(record.topic, record.partition, record.offset)

    def _add(self, result: tuple[str, tuple] | events.Event, record: Message) -> None:
        if isinstance(result, tuple):
            self.batch.add_row(*result, record)
        else:
            self.batch.add_dead_letter(result)

    def _in_sequence(self, where: TopicPartition, offset: int, refetching: set[TopicPartition]) -> bool:
        """False at a hole in the partition's offsets the first time: fetch it again (pipeline/gaps.py)."""
        first_missing = self.gaps.expected.get(where)
        verdict = self.gaps.check(where, offset)
        if verdict is Verdict.REFETCH and first_missing is not None:
            metrics.OFFSET_GAPS.labels("refetched").inc()
            log.warning("%s[%d]: the client skipped offsets %d-%d; fetching them again", *where, first_missing,
                        offset - 1)
            refetching.add(where)
            self.consumer.seek(where, first_missing)
            return False
        if verdict is Verdict.CONFIRMED:
            metrics.OFFSET_GAPS.labels("confirmed").inc()
            log.warning("%s[%d]: no record at offsets %d-%d on the broker (fetched twice); loading on", *where,
                        first_missing, offset - 1)
        return True

    def flush(self, defer: bool = False) -> bool:
        """Insert the batch, publish its dead letters, commit its offsets; retry until done or stopped.
        False when stopped before the batch was written: nothing of it is committed then. `defer`: a batch
        whose rows all went to the store already is settled at the next flush (the server writes it
        meanwhile); the pending one is always settled first, so commits stay in order."""
        if self.flushing:
            return True
        if not self._settle_pending():
            return False
        if self.batch.empty:
            return True
        if defer and self.streams and not self.batch.rows and self.streams.end():
            self.pending = (self.batch, self.streams)
            self.batch, self.streams = self._new_batch(), self._new_streams()
            return True
        if not self._settle(self.batch, self.streams):
            return False
        self.batch, self.streams = self._new_batch(), self._new_streams()
        return True

    def _settle_pending(self) -> bool:
        if self.pending is None:
            return True
        pending, self.pending = self.pending, None
        return self._settle(*pending)

    def _settle(self, batch: Batch, streams: LineStreams | None) -> bool:
        self.flushing = True
        backoff = self.config.backoff_initial_s
        try:
            while not self._attempt(batch, streams):
                if self.stop_event.is_set():
                    log.warning("stopping with an unwritten batch: its offsets stay uncommitted, so the "
                                "partitions' next owner loads it")
                    return False
                log.warning("retrying in %.1f s with partitions paused", backoff)
                self._wait_paused(backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
        finally:
            metrics.PAUSED.set(0)
            self.flushing = False
        if self.repair:  # blocks that failed mid-way: their rollup rows are checked from now on
            for table, rows in batch.unsure:
                self.repair.add(table, rows)
        return True

    def _attempt(self, batch: Batch, streams: LineStreams | None) -> bool:
        try:
            self._write(batch, streams)
            return True
        except (StoreError, KafkaClientError) as err:
            metrics.INSERT_FAILURES.inc()
            metrics.PAUSED.set(1)
            log.warning("write failed: %s", err)
            self.guard.assigned(set(batch.offsets))  # part may be stored: check before the next try
            return False

    def _wait_paused(self, seconds: float) -> None:
        """Keep polling (so the group keeps us) without taking records while the store recovers; a paused
        partition hands out nothing and loses nothing (core/kafka/abstract.py)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop_event.is_set():
            self.consumer.pause(self.consumer.assignment())  # again each time: a rebalance resumes all
            try:
                self.consumer.poll(0.2)  # paused: returns nothing, keeps the group membership alive
            except KafkaClientError as err:
                log.warning("poll while paused failed: %s", err)
                self.stop_event.wait(0.2)
            self._update_lag()
        self.consumer.resume(self.consumer.assignment())

    def _write(self, batch: Batch, streams: LineStreams | None) -> None:
        for kind, stored in (streams.settle(batch) if streams else {}).items():
            self._stored(kind, stored)
        for kind, rows in batch.rows.items():
            table = TABLE_BY_KIND[kind]
            fresh = self.guard.filter(self.store, table, rows)
            metrics.DUPLICATES.inc(len(rows) - len(fresh))
            if fresh:
                started = time.monotonic()
                stored = insert_bisecting(self.store, kind, fresh, batch)
                metrics.INSERT_SECONDS.observe(time.monotonic() - started)
                self._stored(kind, stored)
        publish_dead_letters(self.producer, batch, self.dead_log)
        if not self.consumer.commit({tp: offset + 1 for tp, offset in batch.offsets.items()}):
            # The group moved our partitions while we retried. The rows are in; the new owner is
            # redelivered them and its RedeliveryGuard skips them, so nothing is lost or doubled.
            log.warning("commit refused after a rebalance; the new owner skips these rows")
        self.progress.committed()
        metrics.BATCHES.inc()

    def _stored(self, kind: str, rows: int) -> None:
        metrics.ROWS.labels(TABLE_BY_KIND[kind]).inc(rows)
        self.rows_loaded += rows

    def _update_lag(self) -> None:
        now = time.monotonic()
        started, rows_then = self._rate_mark
        if now - started < 5:
            return
        metrics.ROWS_PER_SECOND.set((self.rows_loaded - rows_then) / (now - started))
        self._rate_mark = (now, self.rows_loaded)
        try:
            total = 0
            for topic, partition in self.consumer.assignment():
                position = self.consumer.position((topic, partition))
                _, high = self.consumer.watermarks((topic, partition), cached=True)  # no request: never stall
                if position is not None and high >= 0:  # Tansu's high mark trails by up to a batch: clamp at 0
                    lag = max(0, high - position)
                    metrics.LAG.labels(topic, str(partition)).set(lag)
                    total += lag
            self.progress.lag(total + self.batch.size)  # taken but not yet stored counts as waiting
        except KafkaClientError as err:
            log.warning("consumer lag unknown: %s", err)

