"""The confluent-kafka backend (librdkafka: C-speed fetching and batching) of core/kafka's Consumer and
Producer. It reproduces the contract's rebalance rules on top of librdkafka's: a seek or pause made
inside on_assign is applied with the assignment, and messages of a paused partition that were
already fetched are held back and read again after resume."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import Producer as RdProducer
from confluent_kafka import TopicPartition as RdTP

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

_REFUSED_AFTER_REBALANCE = {KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                            KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST}
_TIMEOUT_S = 10.0
_NO_GROUP = "svcpulse-no-group"  # librdkafka wants a group.id even for assign(); nothing is committed with it
_new_tuple = tuple.__new__


def _tps(partitions: list[RdTP]) -> set[TopicPartition]:
    return {(tp.topic, tp.partition) for tp in partitions}


def _error(what: str, err: KafkaException) -> KafkaClientError:
    return KafkaClientError(f"{what}: {err.args[0].str() if err.args else err}")


def consumer_config(bootstrap: str, group_id: str | None, tuning: ConsumerTuning) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id or _NO_GROUP,
        "client.id": tuning.client_id,
        "enable.auto.commit": False,  # offsets are committed by the caller, after its work is done
        "auto.offset.reset": tuning.auto_offset_reset,
        "session.timeout.ms": tuning.session_timeout_ms,
        "heartbeat.interval.ms": tuning.heartbeat_interval_ms,
        "max.poll.interval.ms": tuning.max_poll_interval_ms,
        "fetch.max.bytes": tuning.fetch_max_bytes,
        "fetch.wait.max.ms": tuning.fetch_max_wait_ms,
        "max.partition.fetch.bytes": tuning.max_partition_fetch_bytes,
        "topic.metadata.refresh.interval.ms": tuning.metadata_max_age_ms,
        # When the prefetch queue is full librdkafka waits this long before fetching again (default 1 s):
        # a loader that drains the queue in less sat idle for the rest, a sixth of a 1M-event drain
        # (docs/scaling.md). 20 ms costs a few more fetch checks.
        "fetch.queue.backoff.ms": 20,
        **KafkaSecurity.current().librdkafka(),
        **tuning.config,
    }


class ConfluentConsumer(Consumer):
    def __init__(self, bootstrap: str, group_id: str | None, tuning: ConsumerTuning) -> None:
        self._bootstrap, self._tuning, self._group_id = bootstrap, tuning, group_id
        self._consumer = RdConsumer(consumer_config(bootstrap, group_id, tuning))
        self._paused: set[TopicPartition] = set()
        self._held_back: dict[TopicPartition, int] = {}  # paused partition -> first offset not handed out
        self._assigning: dict[TopicPartition, int] | None = None  # seeks made inside on_assign
        self._probe: RdConsumer | None = None

    def subscribe(self, topics: list[str], on_assign: PartitionsCallback = lambda _: None,
                  on_revoke: PartitionsCallback = lambda _: None) -> None:
        def assigned(consumer: RdConsumer, partitions: list[RdTP]) -> None:
            new = _tps(partitions)
            self._paused -= new  # a new assignment starts resumed
            self._assigning = {}
            try:
                on_assign(new)
            finally:
                seeks, self._assigning = self._assigning, None
                consumer.assign([RdTP(t, p, seeks.get((t, p), OFFSET_INVALID)) for t, p in new])
                if paused := self._paused & new:
                    consumer.pause([RdTP(*tp) for tp in paused])

        def revoked(_: RdConsumer, partitions: list[RdTP]) -> None:
            gone = _tps(partitions)
            try:
                on_revoke(gone)
            finally:
                self._paused -= gone
                for tp in gone:
                    self._held_back.pop(tp, None)

        self._consumer.subscribe(topics, on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def assign(self, offsets: Mapping[TopicPartition, int | None]) -> None:
        committed = self.committed(set(offsets)) if self._group_id else {}
        starts = []
        for tp, offset in offsets.items():
            start = offset if offset is not None else committed.get(tp)
            starts.append(RdTP(*tp, OFFSET_BEGINNING if start is None else start))
        self._paused.clear()
        self._held_back.clear()
        self._consumer.assign(starts)

    def partitions_for(self, topic: str) -> set[int]:
        try:
            metadata = self._consumer.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
        except KafkaException as err:
            raise _error(f"metadata of {topic} from {self._bootstrap}", err) from err
        if metadata is None or metadata.error is not None:
            return set()
        return set(metadata.partitions)

    def poll(self, timeout_s: float, max_records: int = 10_000) -> list[Message]:
        try:
            polled = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        except KafkaException as err:
            raise _error(f"poll from {self._bootstrap}", err) from err
        # The loader's hot loop: one comprehension, and tuple.__new__ skips Message's Python-level __new__.
        messages = [_new_tuple(Message, (m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value()))
                    for m in polled if m.error() is None]
        if len(messages) < len(polled):
            for m in polled:
                if m.error() is not None:
                    self._raise_if_fatal(m.error())
        return self._hold_back_paused(messages) if self._paused else messages

    def _raise_if_fatal(self, error: KafkaError) -> None:
        """Partition EOF and transient transport errors are informational: librdkafka retries by itself."""
        if error.fatal():
            raise KafkaClientError(f"Kafka {self._bootstrap}: {error.str()}")

    def _hold_back_paused(self, messages: list[Message]) -> list[Message]:
        kept = []
        for message in messages:
            tp = (message.topic, message.partition)
            if tp in self._paused:
                self._held_back.setdefault(tp, message.offset)
            else:
                kept.append(message)
        return kept

    def assignment(self) -> set[TopicPartition]:
        return _tps(self._consumer.assignment())

    def pause(self, partitions: set[TopicPartition]) -> None:
        self._paused |= partitions
        if self._assigning is None:  # inside on_assign the pause is applied with the assignment
            self._consumer.pause([RdTP(*tp) for tp in partitions])

    def resume(self, partitions: set[TopicPartition]) -> None:
        self._consumer.resume([RdTP(*tp) for tp in partitions])
        self._paused -= partitions
        for tp in partitions:
            if (offset := self._held_back.pop(tp, None)) is not None:
                self.seek(tp, offset)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._held_back.pop(partition, None)
        if self._assigning is not None:
            self._assigning[partition] = offset
            return
        try:
            self._consumer.seek(RdTP(*partition, offset))
        except KafkaException as err:
            raise _error(f"seek {partition} to {offset}", err) from err

    def position(self, partition: TopicPartition) -> int | None:
        if (held := self._held_back.get(partition)) is not None:
            return held
        offset = self._consumer.position([RdTP(*partition)])[0].offset
        return offset if offset >= 0 else None

    def committed(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int | None]:
        if not self._group_id:
            raise KafkaClientError("committed offsets need a consumer with a group_id")
        try:
            found = self._consumer.committed([RdTP(*tp) for tp in partitions], timeout=_TIMEOUT_S)
        except KafkaException as err:
            raise _error(f"committed offsets from {self._bootstrap}", err) from err
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}

    def watermarks(self, partition: TopicPartition, cached: bool = False) -> tuple[int, int]:
        try:
            marks = self._consumer.get_watermark_offsets(RdTP(*partition), timeout=_TIMEOUT_S, cached=cached)
            return (-1, -1) if marks is None else tuple(marks)  # type: ignore[return-value]
        except KafkaException as err:
            raise _error(f"watermarks of {partition} from {self._bootstrap}", err) from err

    def offsets_for_times(self, times: Mapping[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        try:
            found = self._consumer.offsets_for_times([RdTP(*tp, ts) for tp, ts in times.items()],
                                                     timeout=_TIMEOUT_S)
        except KafkaException as err:
            raise _error(f"offsets for times from {self._bootstrap}", err) from err
        answers = {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}
        return timesearch.resolve(dict(times), answers, self.watermarks, self._read_from)

    def _read_from(self, partition: TopicPartition, offset: int) -> list[Message]:
        if self._probe is None:  # answers at once: no waiting for a fetch to fill up
            self._probe = RdConsumer({**consumer_config(self._bootstrap, None, self._tuning), "fetch.wait.max.ms": 5})
        self._probe.assign([RdTP(*partition, offset)])
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            messages = [Message(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value())
                        for m in self._probe.consume(num_messages=500, timeout=0.01) if m.error() is None]
            if messages:
                return [m for m in messages if m.offset >= offset]
        return []

    def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        try:
            results = self._consumer.commit(offsets=[RdTP(*tp, offset) for tp, offset in offsets.items()],
                                            asynchronous=False)
        except KafkaException as err:
            if err.args and err.args[0].code() in _REFUSED_AFTER_REBALANCE:
                return False
            raise _error(f"commit to {self._bootstrap}", err) from err
        errors = [tp.error for tp in results or () if tp.error is not None]
        if any(error.code() in _REFUSED_AFTER_REBALANCE for error in errors):
            return False
        if errors:
            raise KafkaClientError(f"commit to {self._bootstrap}: {errors[0].str()}")
        return True

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
        self._consumer.close()


class ConfluentProducer(Producer):
    def __init__(self, bootstrap: str, tuning: ProducerTuning) -> None:
        self._bootstrap, self._max_block_s = bootstrap, tuning.max_block_ms / 1000
        self._producer = RdProducer({
            "bootstrap.servers": bootstrap,
            "client.id": tuning.client_id,
            "acks": "all",
            "enable.idempotence": tuning.idempotence,  # retries then keep per-partition order
            "compression.type": "lz4" if tuning.compression == "auto" else (tuning.compression or "none"),
            "linger.ms": tuning.linger_ms,
            "batch.size": tuning.batch_bytes,
            "message.timeout.ms": tuning.delivery_timeout_ms,
            "queue.buffering.max.messages": tuning.queue_max_messages,
            "reconnect.backoff.max.ms": 2000,
            # Kafka's default (Java, kafka-python) key -> partition: a service's rpc events land on one
            # partition whichever client produced them (the weigh workers shard services by it).
            "partitioner": "murmur2_random",
            "delivery.report.only.error": True,  # no Python callback per acknowledged message
            "on_delivery": self._delivered,
            **KafkaSecurity.current().librdkafka(),
            **tuning.config,
        })
        self._failures: list[KafkaError] = []
        self._produced = 0

    def _delivered(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self._failures.append(error)

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        deadline = None
        while True:
            try:
                self._producer.produce(topic, value, key)
                break
            except BufferError:  # the local queue is full: serve callbacks while librdkafka sends
                deadline = deadline or time.monotonic() + self._max_block_s
                if time.monotonic() > deadline:
                    raise DeliveryError(f"produce to {topic}: local queue full for {self._max_block_s:g} s "
                                        f"(is {self._bootstrap} reachable?)") from None
                self._producer.poll(0.05)
            except KafkaException as err:
                raise DeliveryError(f"produce to {topic} at {self._bootstrap}: {err}") from err
        self._produced += 1
        if self._produced % 10_000 == 0:
            self._producer.poll(0)  # serve error callbacks now and then, not per message

    def produce_many(self, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
        # librdkafka's produce straight from the loop (a sink's batch: ~0.2 us per message less than produce())
        produce = self._producer.produce
        for key, value in messages:
            try:
                produce(topic, value, key)
            except (BufferError, KafkaException):  # the queue is full, or an error: produce() waits or raises
                self.produce(topic, value, key)
        self._producer.poll(0)  # serve error callbacks once per batch

    def flush(self, timeout_s: float = 30.0) -> None:
        undelivered = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if failures or undelivered:
            first = failures[0].str() if failures else "not acknowledged in time"
            raise DeliveryError(f"{len(failures)} failed, {undelivered} unacknowledged message(s) to "
                                f"{self._bootstrap}: {first}")

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
