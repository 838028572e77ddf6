"""The loader's view of a Kafka consumer, with two clients behind it.

kafka-python is the default (pure Python, what the design asks for). confluent-kafka (librdkafka)
is an optional faster path (`SVCPULSE_KAFKA_CLIENT=confluent`, bench/loader.py measures both). Both
return records with .topic .partition .offset .timestamp .value, the shape transform() reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pipeline.batch import TopicPartition
from pipeline.kafka import make_consumer

PartitionsCallback = Callable[[set[TopicPartition]], None]
CLIENTS = ("kafka-python", "confluent")


class Consumer(Protocol):
    def subscribe(self, topics: list[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback) -> None: ...

    def poll(self, timeout_s: float) -> list[Any]:
        """Records in offset order per partition (possibly none)."""
        ...

    def pause_all(self) -> None: ...

    def resume_all(self) -> None: ...

    def rewind(self, partition: TopicPartition, offset: int) -> None: ...

    def commit(self, next_offsets: dict[TopicPartition, int]) -> bool:
        """Commit; False when the group refused because the partitions moved (a rebalance)."""
        ...

    def lag(self) -> dict[TopicPartition, int]: ...

    def close(self) -> None: ...


def open_consumer(client: str, bootstrap: str, group_id: str) -> Consumer:
    if client == "kafka-python":
        return KafkaPythonConsumer(bootstrap, group_id)
    if client == "confluent":
        from pipeline.consumer_confluent import ConfluentConsumer

        return ConfluentConsumer(bootstrap, group_id)
    raise ValueError(f"Kafka client {client!r}: expected one of {', '.join(CLIENTS)}")


class KafkaPythonConsumer:
    def __init__(self, bootstrap: str, group_id: str) -> None:
        from kafka import TopicPartition as KafkaTP

        self._tp = KafkaTP
        self._consumer = make_consumer(bootstrap, group_id)

    def subscribe(self, topics: list[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback) -> None:
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                on_revoke({(tp.topic, tp.partition) for tp in revoked})

            def on_partitions_assigned(self, assigned: Any) -> None:
                on_assign({(tp.topic, tp.partition) for tp in assigned})

        self._consumer.subscribe(topics, listener=Listener())

    def poll(self, timeout_s: float) -> list[Any]:
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        return [record for records in polled.values() for record in records]

    def pause_all(self) -> None:
        self._consumer.pause(*self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def rewind(self, partition: TopicPartition, offset: int) -> None:
        self._consumer.seek(self._tp(*partition), offset)

    def commit(self, next_offsets: dict[TopicPartition, int]) -> bool:
        from kafka.errors import CommitFailedError
        from kafka.structs import OffsetAndMetadata

        try:
            self._consumer.commit({self._tp(*tp): OffsetAndMetadata(offset, "", -1)
                                   for tp, offset in next_offsets.items()})
        except CommitFailedError:
            return False
        return True

    def lag(self) -> dict[TopicPartition, int]:
        lags = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - (self._consumer.position(tp) or 0))
        return lags

    def close(self) -> None:
        self._consumer.close(autocommit=False)


