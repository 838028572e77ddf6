"""The Kafka client contract every svcpulse component codes against: one Consumer, one Producer.

Modelled on Sentry Arroyo's backends/abstract.py. Two backends implement it (core/kafka/kafka_python.py
and core/kafka/confluent.py) with the same observable behaviour, checked against the real broker by
tests/integration/test_kafka_layer.py for both.

Offsets. An offset handed to or returned by this API is always the offset of the NEXT message to read:
committing X means "everything below X is done"; seek(tp, X) makes the next poll start at X; assign
with X starts there; offsets_for_times answers the first offset whose message is at or after the
time. There are three kinds of offset: the working position (local, moved by poll and seek), the
committed offset (kept by the group coordinator, where a new owner starts) and the watermarks
(the log's first offset and the offset the next produced message gets).

Pause. A paused partition stays assigned (the member stays in its group as long as poll() is called
within max_poll_interval) but poll() returns none of its messages; messages fetched before the pause
are not lost: after resume() the partition continues at its working position. Pausing does not
survive a rebalance: every partition of a new assignment starts resumed (as in Arroyo), so a caller
that wants it paused pauses it in on_assign.

Rebalance (eager, the default protocol of both clients). Inside poll(): on_revoke(partitions) is
called before the partitions are taken away, so a commit made in it still counts; then on_assign(new)
with the new set. Every assigned partition starts at its committed offset, or at the log start when
the group has none (auto_offset_reset="earliest", the default). After a rebalance the group refuses
commits for partitions it moved: commit() then returns False instead of raising.

Errors. Broker and client failures surface as KafkaClientError (retry later); a produce that was not
acknowledged surfaces as DeliveryError from flush(). Backend exception types never leak out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

TopicPartition = tuple[str, int]
PartitionsCallback = Callable[[set[TopicPartition]], None]
CLIENTS = ("kafka-python", "confluent")


class Message(NamedTuple):
    """One consumed message. timestamp_ms is the Kafka timestamp (producer or broker time), -1 if none."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


class KafkaClientError(RuntimeError):
    """The broker or the client failed (unreachable, timed out, refused); the operation may be retried."""


class DeliveryError(KafkaClientError):
    """Produced messages were not acknowledged: they may or may not be in the topic (at-least-once)."""


def _ignore(_: set[TopicPartition]) -> None:
    return None


class Consumer(ABC):
    """A Kafka consumer: a group member (subscribe) or a reader of chosen partitions (assign)."""

    @abstractmethod
    def subscribe(self, topics: list[str], on_assign: PartitionsCallback = _ignore,
                  on_revoke: PartitionsCallback = _ignore) -> None:
        """Join the consumer group for these topics; the callbacks run inside poll() (see the module doc)."""

    @abstractmethod
    def assign(self, offsets: Mapping[TopicPartition, int | None]) -> None:
        """Read exactly these partitions without joining a group, each from the given offset; None = the
        group's committed offset when the consumer has a group_id and one exists, else the log start.
        Replaces any previous assignment; commit() works when the consumer has a group_id."""

    @abstractmethod
    def partitions_for(self, topic: str) -> set[int]:
        """The topic's partition numbers (an empty set when the topic does not exist)."""

    @abstractmethod
    def poll(self, timeout_s: float, max_records: int = 10_000) -> list[Message]:
        """Up to max_records messages, in offset order per partition, none from a paused partition; waits
        up to timeout_s when none is ready. Runs rebalance callbacks. Raises KafkaClientError."""

    @abstractmethod
    def assignment(self) -> set[TopicPartition]:
        """The partitions currently assigned (paused ones included)."""

    @abstractmethod
    def pause(self, partitions: set[TopicPartition]) -> None:
        """Stop returning messages of these assigned partitions until resume() (or a rebalance)."""

    @abstractmethod
    def resume(self, partitions: set[TopicPartition]) -> None:
        """Return messages of these partitions again, from their working position."""

    @abstractmethod
    def paused(self) -> set[TopicPartition]:
        """The assigned partitions that are paused."""

    @abstractmethod
    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Move the working position of an assigned partition: the next poll starts at `offset`."""

    @abstractmethod
    def position(self, partition: TopicPartition) -> int | None:
        """The working position of an assigned partition (None while it is not known yet)."""

    @abstractmethod
    def committed(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offsets (None = nothing committed); needs a group_id, no membership."""

    @abstractmethod
    def watermarks(self, partition: TopicPartition, cached: bool = False) -> tuple[int, int]:
        """(first offset in the log, offset of the next message produced), as the broker reports them.
        cached=True answers from the last fetch response without a request (-1 when none is known
        yet): cheap enough for a lag gauge inside a poll loop.

        Tansu 0.6 answers the request (cached=False) at batch granularity: the base offset of the last
        record batch plus one, lower than Kafka's answer when that batch holds several messages; the
        high watermark in its fetch responses (cached=True) is exact."""

    @abstractmethod
    def offsets_for_times(self, times: Mapping[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        """Per partition, the first offset whose message timestamp is >= the time (ms); None when every
        message is older. Exact on Kafka; on brokers whose answer is wrong it is found by a search that
        assumes timestamps grow with offsets (see core/kafka/timesearch.py)."""

    @abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        """Commit next-offsets synchronously. False when the group refused them because a rebalance moved
        the partitions (the caller must not assume they are committed); KafkaClientError otherwise."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group (without committing anything) and release the connections."""


class Producer(ABC):
    """A Kafka producer: acks=all, per-key order kept across retries (idempotence), batches compressed."""

    @abstractmethod
    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue one message; messages with one key go to one partition, in produce order. Blocks (up to
        the delivery timeout) when the local queue is full; never waits for the broker otherwise."""

    def produce_many(self, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
        """produce() each (key, value) in order; a client may do it in fewer Python calls per message."""
        for key, value in messages:
            self.produce(topic, value, key)

    @abstractmethod
    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every message produced so far is acknowledged. Raises DeliveryError naming how many
        failed or were not acknowledged in time, with the first reason; the failures are then forgotten."""

    @abstractmethod
    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to timeout_s) and release the connections; never raises."""
