"""Client tuning in one spelling, mapped by each backend to its own (kafka-python keywords, librdkafka
properties). `config` passes client-specific settings through unchanged, in that client's spelling.

Session and heartbeat are short on purpose: a group join waits session_timeout/2 before it completes,
which with the 45 s default stalls every start and rebalance by 23 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConsumerTuning:
    client_id: str = "svcpulse"
    auto_offset_reset: str = "earliest"  # where a partition without a committed offset starts
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    max_poll_interval_ms: int = 600_000  # a member that does not poll this long is dropped from the group
    max_poll_records: int = 20_000  # kafka-python: records one fetch round hands out at most
    fetch_max_bytes: int = 64 * 1024 * 1024
    max_partition_fetch_bytes: int = 16 * 1024 * 1024
    fetch_max_wait_ms: int = 500  # longest the broker holds a fetch that finds no new data (both clients' default)
    metadata_max_age_ms: int = 10_000  # notice new partitions and topics within seconds
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProducerTuning:
    client_id: str = "svcpulse-producer"
    linger_ms: int = 20
    batch_bytes: int = 512 * 1024
    compression: str | None = "auto"  # "auto" = lz4 (gzip when kafka-python lacks the lz4 module), or none
    idempotence: bool = True  # with acks=all: retries neither reorder nor duplicate a key's messages
    delivery_timeout_ms: int = 30_000  # a message not acknowledged by then has failed
    max_block_ms: int = 5000  # longest produce() waits for metadata or queue space
    queue_max_messages: int = 500_000  # confluent: local queue bound (produce() blocks beyond it)
    config: dict[str, Any] = field(default_factory=dict)
