"""The optional confluent-kafka (librdkafka) consumer: the same small interface, C-speed fetching."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer as RdKafkaConsumer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as RdTopicPartition

from pipeline.batch import TopicPartition
from pipeline.consumer import PartitionsCallback
from pipeline.kafka_security import KafkaSecurity
from pipeline.transform import Message

_BATCH = 20_000


class ConfluentConsumer:
    def __init__(self, bootstrap: str, group_id: str) -> None:
        self._consumer = RdKafkaConsumer({
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,  # offsets are committed only after the insert returns
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,  # a join waits session/2: keep starts and rebalances short
            "heartbeat.interval.ms": 1000,
            "max.poll.interval.ms": 600_000,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "topic.metadata.refresh.interval.ms": 10_000,
            "client.id": f"svcpulse-{group_id}",
            **KafkaSecurity.from_env().librdkafka(),
        })

    def subscribe(self, topics: list[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback) -> None:
        def assigned(_: Any, partitions: list[RdTopicPartition]) -> None:
            on_assign({(tp.topic, tp.partition) for tp in partitions})

        def revoked(_: Any, partitions: list[RdTopicPartition]) -> None:
            on_revoke({(tp.topic, tp.partition) for tp in partitions})

        self._consumer.subscribe(topics, on_assign=assigned, on_revoke=revoked)

    def poll(self, timeout_s: float) -> list[Any]:
        records = []
        for message in self._consumer.consume(num_messages=_BATCH, timeout=timeout_s):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            records.append(Message(message.topic(), message.partition(), message.offset(),
                                   message.timestamp()[1], message.value()))
        return records

    def pause_all(self) -> None:
        self._consumer.pause(self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(self._consumer.assignment())

    def rewind(self, partition: TopicPartition, offset: int) -> None:
        self._consumer.seek(RdTopicPartition(partition[0], partition[1], offset))

    def commit(self, next_offsets: dict[TopicPartition, int]) -> bool:
        offsets = [RdTopicPartition(topic, partition, offset) for (topic, partition), offset in next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as err:
            code = err.args[0].code() if err.args else None
            if code in (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                        KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST):
                return False
            raise
        return True

    def lag(self) -> dict[TopicPartition, int]:
        lags = {}
        assignment = self._consumer.assignment()
        for tp in self._consumer.position(assignment):
            _, high = self._consumer.get_watermark_offsets(tp, cached=True) or (0, -1)
            if high >= 0 and tp.offset >= 0:
                lags[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return lags

    def close(self) -> None:
        self._consumer.close()
