"""One Kafka client layer for every svcpulse component (loader, weigher, sink, API, tools).

    from core.kafka import open_consumer, open_producer, ensure_topics, Message, Consumer, Producer

`open_consumer` / `open_producer` pick the backend by name (settings.kafka_client): "kafka-python"
(pure Python, the default) or "confluent" (librdkafka). Both honour the contract documented in
core/kafka/abstract.py; backends are imported only when chosen, so a node needs only its client.
"""

from __future__ import annotations

from typing import Any

from core.kafka.abstract import (
    CLIENTS,
    Consumer,
    DeliveryError,
    KafkaClientError,
    Message,
    PartitionsCallback,
    Producer,
    TopicPartition,
)
from core.kafka.admin import DEFAULT_PARTITIONS, ensure_topics
from core.kafka.tuning import ConsumerTuning, ProducerTuning

__all__ = ["CLIENTS", "DEFAULT_PARTITIONS", "Consumer", "ConsumerTuning", "DeliveryError", "KafkaClientError",
           "Message", "PartitionsCallback", "Producer", "ProducerTuning", "TopicPartition", "ensure_topics",
           "open_consumer", "open_producer"]


def _check(client: str) -> None:
    if client not in CLIENTS:
        raise ValueError(f"Kafka client {client!r}: expected one of {', '.join(CLIENTS)}")


def open_consumer(client: str, bootstrap: str, group_id: str | None = None, **tuning: Any) -> Consumer:
    """A consumer; group_id=None reads assigned partitions only. tuning: ConsumerTuning's fields."""
    _check(client)
    options = ConsumerTuning(**{"client_id": f"svcpulse-{group_id or 'reader'}", **tuning})
    if client == "confluent":
        from core.kafka.confluent import ConfluentConsumer

        return ConfluentConsumer(bootstrap, group_id, options)
    from core.kafka.kafka_python import KafkaPythonConsumer

    return KafkaPythonConsumer(bootstrap, group_id, options)


def open_producer(client: str, bootstrap: str, **tuning: Any) -> Producer:
    """A producer (acks=all, idempotent, compressed). tuning: ProducerTuning's fields."""
    _check(client)
    options = ProducerTuning(**tuning)
    if client == "confluent":
        from core.kafka.confluent import ConfluentProducer

        return ConfluentProducer(bootstrap, options)
    from core.kafka.kafka_python import KafkaPythonProducer

    return KafkaPythonProducer(bootstrap, options)
