"""Pure transform: one Kafka message -> a row for its table, or a dead-letter event with the reason.

No I/O. Column order of a row = "ts" + the contract's fields + provenance; the migrations declare
the tables in this order and a test checks both against the contract. Events from emitters that predate
the optional `workload` fields (or leave them "") get them derived from their cgroup path here
(collectors/workload.py), so every row with a cgroup carries a workload name.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import floordiv, itemgetter
from typing import Any

import orjson

from collectors.workload import names_of
from core.kafka import Message
from pipeline import events, fastdecode
from pipeline.topics import KIND_BY_TOPIC

PROVENANCE = ("_topic", "_partition", "_offset", "_kafka_ts_ms")
COLUMNS: dict[str, tuple[str, ...]] = {
    kind: ("ts", *(field.name for field in events.SCHEMAS[kind]), *PROVENANCE)
    for kind in ("tcp", "rpc", "load")
}
_FIELD_NAMES = {kind: tuple(field.name for field in events.SCHEMAS[kind]) for kind in COLUMNS}
# (name, None) for a required field, (name, (default,)) for an optional one: an event built in code
# (tests, benches) may leave optional fields out; validated events always carry them.
_DEFAULTS = {kind: tuple((f.name, None if f.required else (f.default,)) for f in events.SCHEMAS[kind])
             for kind in COLUMNS}
# Where cgroup and workload sit among each kind's values (workload_kind follows workload).
_NAMED_AT = {kind: (names.index("cgroup"), names.index("workload")) for kind, names in _FIELD_NAMES.items()}

Row = tuple[Any, ...]
_TS = _FIELD_NAMES["rpc"].index("ts_ms")  # the same position in every kind
_VALUE, _OFFSET, _KAFKA_TS = itemgetter(5), itemgetter(2), itemgetter(3)  # Message fields, read in C
_AFTER_BRACE = itemgetter(slice(1, None))  # a JSON object's bytes without its opening "{"


def with_workload(kind: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The contract values with `workload`/`workload_kind` derived from the cgroup when the emitter left
    them empty; unchanged otherwise."""
    cgroup_at, workload_at = _NAMED_AT[kind]
    if values[workload_at]:
        return values
    names = workload_names(kind, values[cgroup_at], values[workload_at], values[workload_at + 1])
    return (*values[:workload_at], *names, *values[workload_at + 2:])


def workload_names(kind: str, cgroup: str, workload: str, workload_kind: str) -> tuple[str, str]:
    """(workload, workload_kind): the emitter's own when given (e.g. from Kubernetes, always wins), else
    derived from the cgroup. An rpc event's cgroup is the one its process sees: "/" there means "inside
    a container's cgroup namespace", not the host, so it names nothing."""
    if workload or not cgroup or (cgroup == "/" and kind == "rpc"):
        return workload, workload_kind
    return names_of(cgroup)


def to_row(kind: str, event: events.Event, message: Message) -> Row:
    values = with_workload(kind, tuple(event[name] if default is None else event.get(name, default[0])
                                       for name, default in _DEFAULTS[kind]))
    return (event["ts_ms"] // 1000, *values, message.topic, message.partition, message.offset,
            message.timestamp_ms)


def judge(kind: str, raw: bytes, window: events.TimeWindow | None) -> events.Event:
    """The one verdict on a message's bytes, shared by the loader and `svcpulse dlq replay`: strict UTF-8
    JSON (orjson), the contract, the plausibility window. Raises events.Rejection with the reason."""
    return events.decode(kind, raw, orjson.loads, window)


def transform_run(run: Sequence[Message], window: events.TimeWindow | None,
                  lines: bool = False) -> tuple[str, list[Row]] | None:
    """(kind, rows) for consecutive messages of one partition when the fast path vouches for all of them
    (decoded and checked together: no Python per message); None when any needs the judge, and the
    caller takes them one by one with `transform`. The rows equal what `transform` makes of each.
    lines=True (the store takes JSON lines): line rows where the messages' own bytes can be sent."""
    topic, partition = run[0].topic, run[0].partition
    kind = KIND_BY_TOPIC.get(topic)
    values = list(map(_VALUE, run))
    if kind is None or kind not in COLUMNS or None in values:
        return None
    if lines and all(value[:1] == b"{" for value in values):
        times = fastdecode.contract_times(kind, values, window)
        if times is not None:
            return kind, _line_rows(topic, partition, run, times)
    columns = fastdecode.contract_columns(kind, values, window)
    if columns is None:
        return None
    cgroup_at, workload_at = _NAMED_AT[kind]
    if "" in columns[workload_at]:  # older emitters leave the names out: derive them, row by row
        names = map(workload_names, repeat(kind), columns[cgroup_at], columns[workload_at], columns[workload_at + 1])
        columns[workload_at], columns[workload_at + 1] = zip(*names, strict=True)
    seconds = [ts // 1000 for ts in columns[_TS]]
    return kind, list(zip(seconds, *columns, repeat(topic), repeat(partition), map(_OFFSET, run), map(_KAFKA_TS, run)))


def _line_rows(topic: str, partition: int, run: Sequence[Message], times: list[int]) -> list[Row]:
    """Line rows: each message's own JSON object with `ts` and the provenance spliced in front (the
    contract's optional fields all default to their type's zero, which the server fills in for a field
    left out), then the provenance again for the loader (redelivery guard, bisection). Built with C-level
    maps: this runs for every message."""
    head = b'{"_topic":%b,"_partition":%d,' % (orjson.dumps(topic), partition)
    line = head + b'"_offset":%d,"_kafka_ts_ms":%d,"ts":%d,%b'
    count = len(run)
    offsets, kafka_times = list(map(_OFFSET, run)), list(map(_KAFKA_TS, run))
    seconds = map(floordiv, times, repeat(1000, count))
    lines = map(line.__mod__, zip(offsets, kafka_times, seconds, map(_AFTER_BRACE, map(_VALUE, run)), strict=True))
    return list(zip(lines, repeat(topic, count), repeat(partition, count), offsets, kafka_times, strict=True))


def is_line(row: Row) -> bool:
    """A line row: (the JSON line the store takes, topic, partition, offset, Kafka time)."""
    return row[0].__class__ is bytes


def as_lines(kind: str, rows: Sequence[Row]) -> list[bytes]:
    """The JSON lines of any rows: a line row's own, a full row's encoded by column name."""
    names = COLUMNS[kind]
    return [row[0] if row[0].__class__ is bytes else orjson.dumps(dict(zip(names, row, strict=True)))
            for row in rows]


def transform(message: Message, window: events.TimeWindow | None = None) -> tuple[str, Row] | events.Event:
    """(kind, row) for a valid message (ts_ms within `window` when given); otherwise the dead-letter
    event that explains why."""
    kind = KIND_BY_TOPIC.get(message.topic)
    if kind in COLUMNS and message.value is not None:
        values = fastdecode.contract_values(kind, message.value, window)
        if values is not None:
            values = with_workload(kind, values)
            return kind, (values[1] // 1000, *values, message.topic, message.partition, message.offset,
                          message.timestamp_ms)
    try:
        if kind is None or kind not in COLUMNS:
            raise events.Rejection(f"topic '{message.topic}' is not loaded")
        if message.value is None:
            raise events.Rejection("message has no value (a tombstone)")
        return kind, to_row(kind, judge(kind, message.value, window), message)
    except events.Rejection as rejection:
        return events.dead_letter(rejection.reason, message.topic, message.partition, message.offset,
                                  message.value or b"", message.timestamp_ms)
