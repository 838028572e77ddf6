"""The Kafka access of the control plane, behind one small seam (kafka-python today).

Everything the weigh worker, the API's feed reader and the lease need from Kafka goes through here,
so moving to the project's client layer (core/kafka, helper "loader") touches this file only.
Two broker facts are handled here rather than assumed:
- offsets-for-times: Tansu 0.6 answers every lookup with offset 0, so an answer is checked against
  the records at and before it; when it is wrong, the offset is found by bisecting the partition on
  record timestamps (a few fetches). Bisection can only err early (more replay), never late;
- Tansu reports a high watermark that can trail the last batch's records: "caught up" is decided by
  position >= the watermark seen at the start, or an empty poll, never by equality.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka import TopicPartition as KafkaTP
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from pipeline import topics
from pipeline.kafka import make_consumer, make_producer
from pipeline.kafka_security import KafkaSecurity

TP = tuple[str, int]
PartitionsCallback = Callable[[set[TP]], None]
GROUP_TUNING = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "auto_offset_reset": "latest"}


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


def home_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default (Java, kafka-python, librdkafka murmur2_random) partitioner picks."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def ensure_topics(bootstrap: str, topics: Mapping[str, tuple[int, Mapping[str, str]]],
                  timeout_s: float = 30.0) -> None:
    """Create missing topics: name -> (partitions, configs such as cleanup.policy=compact)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="svcpulse-control-admin",
                                     request_timeout_ms=10_000, **KafkaSecurity.from_env().kafka_python())
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        for name, (partitions, configs) in topics.items():
            if name in existing:
                continue
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created it first
                admin.create_topics([NewTopic(name, partitions, 1, topic_configs=dict(configs))])
    finally:
        admin.close()


def ensure_control_topics(bootstrap: str, partitions: int, timeout_s: float = 30.0) -> None:
    """The topics of the control plane (feeds and control rows compacted; the lease topic has ONE partition)."""
    compact = {"cleanup.policy": "compact"}
    ensure_topics(bootstrap, {topics.RPC: (partitions, {}), topics.WEIGHTS: (partitions, compact),
                              topics.CONTROL: (1, compact), topics.LEADER: (1, {})}, timeout_s)


class Consumer:
    """A consumer in a group (subscribe) or without one (assign); records as `Message`."""

    def __init__(self, bootstrap: str, group_id: str | None, client_id: str, **tuning: Any) -> None:
        tuning = {**GROUP_TUNING, "client_id": client_id, "max_poll_records": 5000, **tuning}
        self._consumer = make_consumer(bootstrap, group_id, **tuning)  # type: ignore[arg-type]

    def subscribe(self, topics: list[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback) -> None:
        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                on_revoke({(tp.topic, tp.partition) for tp in revoked})

            def on_partitions_assigned(self, assigned: Any) -> None:
                on_assign({(tp.topic, tp.partition) for tp in assigned})

        self._consumer.subscribe(topics, listener=Listener())

    def partitions_for(self, topic: str, timeout_s: float = 30.0) -> set[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._consumer.partitions_for_topic(topic)
            if found:
                return set(found)
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions after {timeout_s:.0f} s")
            time.sleep(0.2)

    def assign(self, tps: Iterable[TP]) -> None:
        self._consumer.assign([KafkaTP(*tp) for tp in tps])

    def assignment(self) -> set[TP]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def poll(self, timeout_s: float) -> list[Message]:
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        return [Message(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)
                for records in polled.values() for r in records]

    def pause(self, tps: Iterable[TP]) -> None:
        self._consumer.pause(*[KafkaTP(*tp) for tp in tps])

    def resume(self, tps: Iterable[TP]) -> None:
        self._consumer.resume(*[KafkaTP(*tp) for tp in tps])

    def seek(self, tp: TP, offset: int) -> None:
        self._consumer.seek(KafkaTP(*tp), offset)

    def position(self, tp: TP) -> int:
        return self._consumer.position(KafkaTP(*tp))

    def watermarks(self, tp: TP) -> tuple[int, int]:
        ktp = KafkaTP(*tp)
        return self._consumer.beginning_offsets([ktp])[ktp], self._consumer.end_offsets([ktp])[ktp]

    def lag(self, tp: TP) -> int | None:
        """Records between the position and the last high watermark a fetch reported (no request)."""
        ktp = KafkaTP(*tp)
        high = self._consumer.highwater(ktp)
        return None if high is None else max(0, high - self._consumer.position(ktp))

    def offsets_for_times(self, wanted: Mapping[TP, int]) -> dict[TP, tuple[int, int] | None]:
        """tp -> (offset, that record's timestamp) as the broker answers, or None (no such record)."""
        found = self._consumer.offsets_for_times({KafkaTP(*tp): ts for tp, ts in wanted.items()})
        return {(tp.topic, tp.partition): None if hit is None else (hit.offset, hit.timestamp)
                for tp, hit in found.items()}

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def offsets_at_time(bootstrap: str, wanted: Mapping[TP, int]) -> dict[TP, int]:
    """tp -> the first offset whose record timestamp is >= the time asked (the end if none), on any broker."""
    # Small fetches that do not wait: each probe wants the first record at one offset, now.
    lookup = Consumer(bootstrap, None, "svcpulse-control-seek", fetch_max_wait_ms=5, max_partition_fetch_bytes=1,
                      max_poll_records=1)
    try:
        return {tp: _offset_at_time(lookup, tp, ts_ms) for tp, ts_ms in wanted.items()}
    finally:
        lookup.close()


def _offset_at_time(lookup: Consumer, tp: TP, ts_ms: int) -> int:
    lookup.assign([tp])
    low, high = lookup.watermarks(tp)
    if low >= high:
        return high
    answer = lookup.offsets_for_times({tp: ts_ms})[tp]
    if answer is None:
        return high
    if _first_at_or_after(lookup, tp, answer[0], ts_ms, low):
        return answer[0]
    return _bisect(lookup, tp, ts_ms, low, high)  # the broker's answer breaks the contract: find it


def _first_at_or_after(lookup: Consumer, tp: TP, offset: int, ts_ms: int, low: int) -> bool:
    """Check an answer against the records themselves (Tansu answers with a batch's base offset)."""
    at = _timestamp_at(lookup, tp, offset)
    if at is None or at < ts_ms:
        return False
    before = _timestamp_at(lookup, tp, offset - 1) if offset > low else None
    return before is None or before < ts_ms


def _bisect(lookup: Consumer, tp: TP, ts_ms: int, low: int, high: int) -> int:
    while low < high:
        middle = (low + high) // 2
        stamp = _timestamp_at(lookup, tp, middle)
        if stamp is not None and stamp < ts_ms:
            low = middle + 1
        else:
            high = middle
    return low


def _timestamp_at(lookup: Consumer, tp: TP, offset: int) -> int | None:
    lookup.seek(tp, offset)
    for _ in range(3):
        records = lookup.poll(1.0)
        if records:
            return records[0].timestamp_ms
    return None


def producer(bootstrap: str) -> KafkaProducer:
    """acks=all, short linger: a feed should leave within milliseconds of its cycle."""
    return make_producer(bootstrap, linger_ms=5, client_id="svcpulse-control")
