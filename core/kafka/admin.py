"""Topic administration: create the topics a component needs, with per-topic configs.

Uses kafka-python's admin client (pure Python, installed with every role). Existing topics are left
as they are (their partitions and configs are the operator's); only missing ones are created.
Tansu 0.6 accepts and reports topic configs such as cleanup.policy=compact (DescribeConfigs returns
them) but its memory storage neither compacts nor deletes: every message is kept (docs/operations.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from core.kafka.abstract import KafkaClientError
from core.kafka.security import KafkaSecurity

DEFAULT_PARTITIONS = 4


def _admin(bootstrap: str, deadline: float) -> KafkaAdminClient:
    while True:  # the broker may still be starting
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="svcpulse-admin",
                                    request_timeout_ms=10_000, **KafkaSecurity.current().kafka_python())
        except KafkaError as err:
            if time.monotonic() > deadline:
                raise KafkaClientError(f"Kafka {bootstrap} unreachable: {err}") from err
            time.sleep(0.5)


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = DEFAULT_PARTITIONS,
                  configs: Mapping[str, str] | None = None, timeout_s: float = 30.0,
                  replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet, with `configs` (e.g. {"cleanup.policy": "compact"});
    returns those created. Safe to race: a topic another replica created first counts as existing."""
    admin = _admin(bootstrap, time.monotonic() + timeout_s)
    try:
        existing = set(admin.list_topics())
        created = []
        for topic in (t for t in dict.fromkeys(topics) if t not in existing):
            try:
                admin.create_topics([NewTopic(topic, partitions, replication, topic_configs=dict(configs or {}))])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
        return created
    except KafkaError as err:
        raise KafkaClientError(f"creating topics at {bootstrap}: {err}") from err
    finally:
        admin.close()
