"""The control plane's use of the project's Kafka client layer (core/kafka): which topics, tuned how.

Every consumer and producer of the weigh workers, the API's feed reader and the lease is opened here
with the client chosen by SVCPULSE_KAFKA_CLIENT. Two broker facts matter (docs/kafka.md):
- offsets-for-times: core/kafka checks the broker's answer and searches when it is wrong (Tansu 0.6
  answers 0 for every lookup); `offsets_at_time` turns "nothing that recent" into the end;
- Tansu reports a high watermark that can trail the last batch's records, so "caught up" is decided
  by position >= the watermark seen at the start, never by equality.
"""

from __future__ import annotations

from collections.abc import Mapping

from kafka.partitioner.default import murmur2

from core.kafka import Consumer, Message, Producer, TopicPartition, ensure_topics, open_consumer, open_producer
from pipeline import topics

__all__ = ["TP", "Consumer", "Message", "Producer", "ensure_control_topics", "home_partition", "member",
           "offsets_at_time", "producer", "reader"]
TP = TopicPartition
COMPACT = {"cleanup.policy": "compact"}


def home_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default (Java, kafka-python, librdkafka murmur2_random) partitioner picks."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def ensure_control_topics(bootstrap: str, partitions: int, timeout_s: float = 30.0) -> None:
    """The topics of the control plane (feeds and control rows compacted; the lease topic has ONE partition)."""
    ensure_topics(bootstrap, [topics.RPC], partitions, timeout_s=timeout_s)
    ensure_topics(bootstrap, [topics.WEIGHTS], partitions, configs=COMPACT, timeout_s=timeout_s)
    ensure_topics(bootstrap, [topics.CONTROL], 1, configs=COMPACT, timeout_s=timeout_s)
    ensure_topics(bootstrap, [topics.LEADER], 1, timeout_s=timeout_s)


def reader(client: str, bootstrap: str, client_id: str) -> Consumer:
    """A consumer without a group (it reads the partitions it assigns itself)."""
    return open_consumer(client, bootstrap, None, client_id=client_id, max_poll_records=5000)


def member(client: str, bootstrap: str, group_id: str, client_id: str) -> Consumer:
    """A group member that starts new partitions at the end: the weigh worker seeks by time itself."""
    return open_consumer(client, bootstrap, group_id, client_id=client_id, auto_offset_reset="latest",
                         max_poll_records=5000)


def offsets_at_time(consumer: Consumer, wanted: Mapping[TP, int]) -> dict[TP, int]:
    """tp -> the first offset at or after the time; the end when every message is older.

    Empty partitions are answered without a lookup: checking a broker's answer reads the partition,
    and a read of an empty one waits out its deadline (2 s per read with kafka-python)."""
    marks = {tp: consumer.watermarks(tp) for tp in wanted}
    asked = {tp: ts for tp, ts in wanted.items() if marks[tp][0] < marks[tp][1]}
    found = consumer.offsets_for_times(asked) if asked else {}
    return {tp: found[tp] if found.get(tp) is not None else marks[tp][1] for tp in wanted}  # type: ignore[misc]


def producer(client: str, bootstrap: str) -> Producer:
    """acks=all, short linger: a feed should leave within milliseconds of its tick."""
    return open_producer(client, bootstrap, linger_ms=5, client_id="svcpulse-control")
