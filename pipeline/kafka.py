"""Kafka clients (kafka-python) configured the way the loader and tools need them.

Session and heartbeat settings are short on purpose: a group join waits session_timeout/2 before
it completes, which with the 45 s default stalls every start and rebalance by 23 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.kafka_security import KafkaSecurity

DEFAULT_PARTITIONS = 4


def make_consumer(bootstrap: str, group_id: str, **overrides: object) -> KafkaConsumer:
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,  # offsets are committed only after the insert returns
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "max_poll_records": 20_000,
        "max_poll_interval_ms": 600_000,
        "fetch_max_bytes": 64 * 1024 * 1024,
        "max_partition_fetch_bytes": 16 * 1024 * 1024,
        "metadata_max_age_ms": 10_000,  # notice new partitions/topics within seconds
        "client_id": f"svcpulse-{group_id}",
        **KafkaSecurity.from_env().kafka_python(),
    }
    options.update(overrides)
    return KafkaConsumer(**options)


def make_producer(bootstrap: str, **overrides: object) -> KafkaProducer:
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 512 * 1024,
        "retries": 5,
        "client_id": "svcpulse-producer",
        **KafkaSecurity.from_env().kafka_python(),
    }
    options.update(overrides)
    return KafkaProducer(**options)


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = DEFAULT_PARTITIONS,
                  timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet (retrying while the broker starts); returns those created."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="svcpulse-admin",
                                     **KafkaSecurity.from_env().kafka_python(),
                                     request_timeout_ms=10_000)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        missing = [topic for topic in topics if topic not in set(admin.list_topics())]
        created = []
        for topic in missing:
            try:
                admin.create_topics([NewTopic(topic, partitions, 1)])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass  # another loader replica created it first
        return created
    finally:
        admin.close()
