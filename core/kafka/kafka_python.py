"""The kafka-python backend (pure Python, the default client) of core/kafka's Consumer and Producer."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTP
from kafka.codec import has_lz4
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError
from kafka.future import Future as KafkaFuture
from kafka.structs import OffsetAndMetadata

from core.kafka import timesearch
from core.kafka.abstract import (
    Consumer,
    DeliveryError,
    KafkaClientError,
    Message,
    PartitionsCallback,
    Producer,
    TopicPartition,
)
from core.kafka.security import KafkaSecurity
from core.kafka.tuning import ConsumerTuning, ProducerTuning

_REFUSED_AFTER_REBALANCE = (CommitFailedError, RebalanceInProgressError)


def _tps(partitions: Any) -> set[TopicPartition]:
    return {(tp.topic, tp.partition) for tp in partitions}


def _message(record: Any) -> Message:
    # tuple.__new__ skips Message's Python-level __new__: one call less per record on the loader's hot loop
    return _new_tuple(Message, (record.topic, record.partition, record.offset, record.timestamp, record.key,
                                record.value))


_new_tuple = tuple.__new__


class _Listener(AsyncConsumerRebalanceListener):
    """kafka-python 3 calls rebalance listeners on its IO thread, where a blocking call (a commit in
    on_revoke, offsets_for_times in on_assign) fails. The callbacks run in a worker thread instead,
    while the IO loop awaits them (heartbeats go on), so they may use the whole Consumer API."""

    def __init__(self, consumer: KafkaConsumer, on_assign: PartitionsCallback, on_revoke: PartitionsCallback) -> None:
        self._consumer, self._on_assign, self._on_revoke = consumer, on_assign, on_revoke

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._in_worker(self._on_revoke, _tps(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._consumer.resume(*assigned)  # a new assignment starts resumed, as the contract says
        await self._in_worker(self._on_assign, _tps(assigned))

    async def _in_worker(self, callback: PartitionsCallback, partitions: set[TopicPartition]) -> None:
        done, net = KafkaFuture(), self._consumer._net  # the consumer's event loop (kafka-python internal)

        def work() -> None:
            outcome: BaseException | None = None
            try:
                callback(partitions)
            except BaseException as err:  # handed to the IO loop, which reports it like a sync listener's
                outcome = err

            async def finish() -> None:
                done.failure(outcome) if outcome is not None else done.success(None)

            net.call_soon_threadsafe(finish)

        threading.Thread(target=work, name="kafka-rebalance-callback", daemon=True).start()
        await done


def consumer_options(bootstrap: str, group_id: str | None, tuning: ConsumerTuning) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap.split(","),
        "group_id": group_id,
        "client_id": tuning.client_id,
        "enable_auto_commit": False,  # offsets are committed by the caller, after its work is done
        "auto_offset_reset": tuning.auto_offset_reset,
        "session_timeout_ms": tuning.session_timeout_ms,
        "heartbeat_interval_ms": tuning.heartbeat_interval_ms,
        "max_poll_interval_ms": tuning.max_poll_interval_ms,
        "max_poll_records": tuning.max_poll_records,
        "fetch_max_bytes": tuning.fetch_max_bytes,
        "fetch_max_wait_ms": tuning.fetch_max_wait_ms,
        "max_partition_fetch_bytes": tuning.max_partition_fetch_bytes,
        "metadata_max_age_ms": tuning.metadata_max_age_ms,
        **KafkaSecurity.current().kafka_python(),
        **tuning.config,
    }


class KafkaPythonConsumer(Consumer):
    def __init__(self, bootstrap: str, group_id: str | None, tuning: ConsumerTuning) -> None:
        self._bootstrap, self._tuning, self._group_id = bootstrap, tuning, group_id
        try:
            self._consumer = KafkaConsumer(**consumer_options(bootstrap, group_id, tuning))
        except KafkaError as err:
            raise KafkaClientError(f"Kafka {bootstrap}: {err}") from err
        self._probe: KafkaConsumer | None = None  # a second, groupless client for offsets_for_times reads

    def subscribe(self, topics: list[str], on_assign: PartitionsCallback = lambda _: None,
                  on_revoke: PartitionsCallback = lambda _: None) -> None:
        self._consumer.subscribe(topics, listener=_Listener(self._consumer, on_assign, on_revoke))

    def assign(self, offsets: Mapping[TopicPartition, int | None]) -> None:
        partitions = [KafkaTP(*tp) for tp in offsets]
        self._consumer.assign(partitions)
        committed = self.committed(set(offsets)) if self._group_id else {}
        for tp, offset in offsets.items():
            start = offset if offset is not None else committed.get(tp)
            if start is None:
                self._consumer.seek_to_beginning(KafkaTP(*tp))
            else:
                self._consumer.seek(KafkaTP(*tp), start)

    def partitions_for(self, topic: str) -> set[int]:
        return self._call(self._consumer.partitions_for_topic, topic) or set()

    def poll(self, timeout_s: float, max_records: int = 10_000) -> list[Message]:
        polled = self._call(self._consumer.poll, timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [_message(record) for records in polled.values() for record in records]

    def assignment(self) -> set[TopicPartition]:
        return _tps(self._consumer.assignment())

    def pause(self, partitions: set[TopicPartition]) -> None:
        self._consumer.pause(*(KafkaTP(*tp) for tp in partitions))

    def resume(self, partitions: set[TopicPartition]) -> None:
        self._consumer.resume(*(KafkaTP(*tp) for tp in partitions))

    def paused(self) -> set[TopicPartition]:
        return _tps(self._consumer.paused())

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._consumer.seek(KafkaTP(*partition), offset)

    def position(self, partition: TopicPartition) -> int | None:
        return self._call(self._consumer.position, KafkaTP(*partition), timeout_ms=5000)

    def committed(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int | None]:
        return {tp: self._call(self._consumer.committed, KafkaTP(*tp), timeout_ms=10_000) for tp in partitions}

    def watermarks(self, partition: TopicPartition, cached: bool = False) -> tuple[int, int]:
        tp = KafkaTP(*partition)
        if cached:
            high = self._consumer.highwater(tp)
            return -1, -1 if high is None else high
        low = self._call(self._consumer.beginning_offsets, [tp], timeout_ms=10_000)[tp]
        high = self._call(self._consumer.end_offsets, [tp], timeout_ms=10_000)[tp]
        return low, high

    def offsets_for_times(self, times: Mapping[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        found = self._call(self._consumer.offsets_for_times, {KafkaTP(*tp): ts for tp, ts in times.items()},
                           timeout_ms=10_000)
        answers = {(tp.topic, tp.partition): (None if at is None or at.timestamp < 0 else at.offset)
                   for tp, at in found.items()}
        return timesearch.resolve(dict(times), answers, self.watermarks, self._read_from)

    def _read_from(self, partition: TopicPartition, offset: int) -> list[Message]:
        if self._probe is None:  # answers at once: no waiting for a fetch to fill up
            self._probe = KafkaConsumer(**{**consumer_options(self._bootstrap, None, self._tuning),
                                           "fetch_max_wait_ms": 5})
        tp = KafkaTP(*partition)
        self._probe.assign([tp])
        self._probe.seek(tp, offset)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # the first polls may only send the fetch
            polled = self._call(self._probe.poll, timeout_ms=20, max_records=500)
            if records := polled.get(tp):
                return [_message(r) for r in records if r.offset >= offset]
        return []

    def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        try:
            self._consumer.commit({KafkaTP(*tp): OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
        except _REFUSED_AFTER_REBALANCE:
            return False
        except KafkaError as err:
            raise KafkaClientError(f"commit to {self._bootstrap} failed: {err}") from err
        return True

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close(autocommit=False)
        self._consumer.close(autocommit=False)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except KafkaError as err:
            raise KafkaClientError(f"Kafka {self._bootstrap}: {err}") from err


class KafkaPythonProducer(Producer):
    def __init__(self, bootstrap: str, tuning: ProducerTuning) -> None:
        compression = tuning.compression
        if compression == "auto":
            compression = "lz4" if has_lz4() else "gzip"
        options: dict[str, Any] = {
            "bootstrap_servers": bootstrap.split(","),
            "client_id": tuning.client_id,
            "acks": "all",
            "enable_idempotence": tuning.idempotence,  # retries then keep per-partition order
            "compression_type": compression,
            "linger_ms": tuning.linger_ms,
            "batch_size": tuning.batch_bytes,
            "delivery_timeout_ms": tuning.delivery_timeout_ms,
            "request_timeout_ms": max(tuning.delivery_timeout_ms // 2, 1000),
            "max_block_ms": tuning.max_block_ms,
            "reconnect_backoff_max_ms": 2000,
            **KafkaSecurity.current().kafka_python(),
            **tuning.config,
        }
        self._bootstrap = bootstrap
        try:
            self._producer = KafkaProducer(**options)
        except KafkaError as err:
            raise KafkaClientError(f"Kafka {bootstrap}: {err}") from err
        self._pending: list[Any] = []  # futures since the last flush

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        try:
            self._pending.append(self._producer.send(topic, value=value, key=key))
        except KafkaError as err:  # e.g. metadata not available within max_block_ms
            raise DeliveryError(f"produce to {topic} at {self._bootstrap}: {err}") from err

    def flush(self, timeout_s: float = 30.0) -> None:
        pending, self._pending = self._pending, []
        with contextlib.suppress(KafkaError):  # counted below: the futures not done are the undelivered ones
            self._producer.flush(timeout=timeout_s)
        failed = [future.exception for future in pending if future.is_done and future.failed()]
        undelivered = sum(1 for future in pending if not future.is_done)
        if failed or undelivered:
            first = failed[0] if failed else "not acknowledged in time"
            raise DeliveryError(f"{len(failed)} failed, {undelivered} unacknowledged of {len(pending)} "
                                f"message(s) to {self._bootstrap}: {first}")

    def close(self, timeout_s: float = 10.0) -> None:
        with contextlib.suppress(KafkaError):  # undelivered messages were reported by flush, or are let go
            self._producer.close(timeout=timeout_s)
