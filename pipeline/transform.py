"""Pure transform: one Kafka message -> a row for its table, or a dead-letter event with the reason.

No I/O. Column order of a row = "ts" + the contract's fields + provenance; the migrations declare
the tables in this order and a test checks both against the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from core.kafka import Message
from pipeline import events
from pipeline.topics import KIND_BY_TOPIC

PROVENANCE = ("_topic", "_partition", "_offset", "_kafka_ts_ms")
COLUMNS: dict[str, tuple[str, ...]] = {
    kind: ("ts", *(field.name for field in events.SCHEMAS[kind]), *PROVENANCE)
    for kind in ("tcp", "rpc", "load")
}
_FIELD_NAMES = {kind: tuple(field.name for field in events.SCHEMAS[kind]) for kind in COLUMNS}

Row = tuple[Any, ...]


def to_row(kind: str, event: events.Event, message: Message) -> Row:
    values = [event[name] for name in _FIELD_NAMES[kind]]
    return (event["ts_ms"] // 1000, *values, message.topic, message.partition, message.offset,
            message.timestamp_ms)


def transform(message: Message, loads: Callable[[bytes], Any] = orjson.loads) -> tuple[str, Row] | events.Event:
    """(kind, row) for a valid message; otherwise the dead-letter event that explains why."""
    kind = KIND_BY_TOPIC.get(message.topic)
    try:
        if kind is None or kind not in COLUMNS:
            raise events.Rejection(f"topic '{message.topic}' is not loaded")
        if message.value is None:
            raise events.Rejection("message has no value (a tombstone)")
        return kind, to_row(kind, events.decode(kind, message.value, loads), message)
    except events.Rejection as rejection:
        return events.dead_letter(rejection.reason, message.topic, message.partition, message.offset,
                                  message.value or b"", message.timestamp_ms)
