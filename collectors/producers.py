"""The Kafka producers behind the sink: kafka-python (default) or confluent-kafka (librdkafka).

Both take a batch of spool Records and return only once every record is acknowledged, or raise:
the sink keeps a batch until then, which is what makes its ordered spool work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from collectors.spool import Record
from core.kafka.security import KafkaSecurity
from core.settings import Settings
from pipeline.topics import TOPIC_BY_KIND


@dataclass
class SinkOptions:
    linger_ms: int = 20
    compression: str | None = "auto"  # "auto" = lz4 when its module is installed, else gzip
    batch_records: int = 1000  # per shipper round trip
    memory_queue: int = 20_000  # events held in memory before spilling to the spool (or dropping)
    delivery_timeout_ms: int = 10_000  # a batch not acknowledged by then counts as failed
    spool_max_bytes: int = 256 * 1024 * 1024
    spool_segment_bytes: int = 16 * 1024 * 1024
    retry_backoff_max_s: float = 5.0
    client_id: str = "svcpulse-collector"
    # "kafka-python" or "confluent" (librdkafka: ~4x less CPU per event); same variable as the loader's
    kafka_client: str = field(default_factory=lambda: Settings().kafka_client)
    producer_config: dict[str, Any] = field(default_factory=dict)  # passed to the producer as is


def new_producer(bootstrap_servers: str, opts: SinkOptions) -> Any:
    if opts.kafka_client == "confluent":
        return _confluent_producer(bootstrap_servers, opts)
    from kafka import KafkaProducer
    from kafka.codec import has_lz4

    compression = opts.compression
    if compression == "auto":
        compression = "lz4" if has_lz4() else "gzip"
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers.split(","),
        client_id=opts.client_id,
        acks="all",
        compression_type=compression,
        linger_ms=opts.linger_ms,
        batch_size=64 * 1024,
        delivery_timeout_ms=opts.delivery_timeout_ms,
        request_timeout_ms=max(opts.delivery_timeout_ms // 2, 1000),
        max_block_ms=5000,  # metadata wait inside send(): bounded, and only the shipper thread waits
        bootstrap_timeout_ms=3000,
        reconnect_backoff_max_ms=2000,
        **{**KafkaSecurity.current().kafka_python(), **opts.producer_config},
    )


def deliver(producer: Any, client: str, batch: list[Record], timeout_s: float) -> None:
    """Produce the batch (key = record key, so per-key order holds) and wait for every acknowledgement."""
    if client == "confluent":
        _deliver_confluent(producer, batch, timeout_s)
        return
    futures = [producer.send(TOPIC_BY_KIND[r.kind], value=r.value, key=r.key) for r in batch]
    deadline = time.monotonic() + timeout_s
    for future in futures:
        future.get(timeout=max(deadline - time.monotonic(), 0.01))


def _confluent_producer(bootstrap_servers: str, opts: SinkOptions) -> Any:
    from confluent_kafka import Producer

    return Producer({
        "bootstrap.servers": bootstrap_servers,
        "client.id": opts.client_id,
        "acks": "all",
        "compression.type": "lz4" if opts.compression == "auto" else (opts.compression or "none"),
        "linger.ms": opts.linger_ms,
        "enable.idempotence": True,  # librdkafka's retries then keep per-partition order
        "message.timeout.ms": opts.delivery_timeout_ms,
        "reconnect.backoff.max.ms": 2000,
        **KafkaSecurity.current().librdkafka(),
        **opts.producer_config,
    })


def _deliver_confluent(producer: Any, batch: list[Record], timeout_s: float) -> None:
    failures: list[Any] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(error)

    for record in batch:
        producer.produce(TOPIC_BY_KIND[record.kind], value=record.value, key=record.key, on_delivery=delivered)
    pending = producer.flush(timeout_s)
    if pending or failures:
        raise RuntimeError(f"{pending} unacknowledged, {len(failures)} failed: {failures[:1]}")
