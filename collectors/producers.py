"""The producer behind the sink, from the one Kafka client layer (core.kafka): confluent by default.

`deliver` produces a batch of (kind, key, value) records and returns only once every record is acknowledged, or
raises: the sink keeps a batch until then, which is what makes its ordered spool work.
The default client is confluent-kafka (librdkafka): it costs a node's collector about a fifth of
kafka-python's CPU per event (docs/sink.md has the figures); SVCPULSE_SINK_KAFKA_CLIENT=kafka-python
keeps the pure-Python client.
"""

from __future__ import annotations

import itertools
import logging
import operator
from dataclasses import dataclass, field
from typing import Any

from core.kafka import Producer, open_producer
from core.settings import Settings
from pipeline.topics import TOPIC_BY_KIND

_LIBRDKAFKA_LOG = logging.getLogger("kafka.librdkafka")
_KIND, _KEY_VALUE = operator.itemgetter(0), operator.itemgetter(1, 2)


@dataclass
class SinkOptions:
    linger_ms: int = 20
    compression: str | None = "auto"  # "auto" = lz4 (gzip when kafka-python lacks the lz4 module)
    batch_records: int = 1000  # per shipper round trip
    memory_queue: int = 20_000  # events held in memory before spilling to the spool (or dropping)
    delivery_timeout_ms: int = 10_000  # a batch not acknowledged by then counts as failed
    spool_max_bytes: int = 256 * 1024 * 1024
    spool_segment_bytes: int = 16 * 1024 * 1024
    retry_backoff_max_s: float = 5.0
    client_id: str = "svcpulse-collector"
    kafka_client: str = field(default_factory=lambda: Settings().sink_kafka_client)
    producer_config: dict[str, Any] = field(default_factory=dict)  # the client's own settings, applied last


def new_producer(bootstrap_servers: str, opts: SinkOptions) -> Producer:
    config = dict(opts.producer_config)
    if opts.kafka_client == "confluent":  # librdkafka's own log lines go through logging, like kafka-python's
        config.setdefault("logger", _LIBRDKAFKA_LOG)
    return open_producer(opts.kafka_client, bootstrap_servers, client_id=opts.client_id, linger_ms=opts.linger_ms,
                         compression=opts.compression, delivery_timeout_ms=opts.delivery_timeout_ms, config=config)


def deliver(producer: Producer, batch: list[tuple[str, bytes | None, bytes]], timeout_s: float) -> None:
    """Produce the batch of (kind, key, value) in order (key = record key, so per-key order holds), each
    run of one kind in one call, and wait for every acknowledgement."""
    for kind, records in itertools.groupby(batch, _KIND):
        producer.produce_many(TOPIC_BY_KIND[kind], map(_KEY_VALUE, records))
    producer.flush(timeout_s)
