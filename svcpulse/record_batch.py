"""Kafka v2 record batches as a broker generation roll writes them: fillers, rebased and sparse batches.

A batch tells the broker its own last offset delta, and the broker (Tansu, like Kafka for compacted
segments) advances the partition's end by it. That is what lets a new broker generation hold the
same offsets as the old one:
  - `filler(n)`: one control batch covering offsets [end, end + n): consumers skip control batches
    (kafka-python and librdkafka both do), so the range reads as empty, exactly like data removed
    by retention;
  - `rebased(batch)`: a batch copied byte for byte, minus its producer id (the new broker never
    saw that producer, and idempotence checks would refuse it);
  - `sparse(records, base)`: records at their original offsets with gaps between them, the shape
    log compaction leaves.
Pure functions; crc32c as Kafka defines it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import crc32c
from kafka.record.default_records import DefaultRecordBatch

_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. record count
_CRC_AT, _ATTRIBUTES_AT = 17, 21  # byte positions in a batch
_PRODUCER_AT = 43  # producer id (8), epoch (2), base sequence (4)
_CONTROL, _TRANSACTIONAL = 0x20, 0x10
_ABORT_MARKER_KEY = struct.pack(">hh", 0, 0)  # control record: version 0, type 0 (abort)
_ABORT_MARKER_VALUE = struct.pack(">hi", 0, 0)  # version 0, coordinator epoch 0


class Record(NamedTuple):
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def _varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _sized(data: bytes | None) -> bytes:
    return _varint(-1) if data is None else _varint(len(data)) + data


def _record(offset_delta: int, timestamp_delta: int, key: bytes | None, value: bytes | None,
            headers: tuple[tuple[str, bytes | None], ...] = ()) -> bytes:
    body = (b"\x00" + _varint(timestamp_delta) + _varint(offset_delta) + _sized(key) + _sized(value)
            + _varint(len(headers)) + b"".join(_sized(name.encode()) + _sized(data) for name, data in headers))
    return _varint(len(body)) + body


def _batch(records: list[bytes], last_offset_delta: int, first_ts: int, max_ts: int, attributes: int = 0) -> bytes:
    after_crc = _AFTER_CRC.pack(attributes, last_offset_delta, first_ts, max_ts, -1, -1, -1, len(records))
    after_crc += b"".join(records)
    after_length = struct.pack(">ibI", -1, 2, crc32c.crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def filler(count: int, timestamp_ms: int) -> bytes:
    """A control batch spanning `count` offsets (one abort marker at its last offset; no data)."""
    if count < 1:
        raise ValueError("a filler spans at least one offset")
    marker = _record(count - 1, 0, _ABORT_MARKER_KEY, _ABORT_MARKER_VALUE)
    return _batch([marker], count - 1, timestamp_ms, timestamp_ms, _CONTROL | _TRANSACTIONAL)


def rebased(batch: bytes) -> bytes:
    """The batch without producer id, epoch and sequence (and not transactional), CRC recomputed."""
    attributes = struct.unpack_from(">h", batch, _ATTRIBUTES_AT)[0]
    if attributes & _CONTROL:
        return batch  # an earlier roll's filler (or a transaction marker): copied as it is
    out = bytearray(batch)
    struct.pack_into(">h", out, _ATTRIBUTES_AT, attributes & ~_TRANSACTIONAL)
    struct.pack_into(">qhi", out, _PRODUCER_AT, -1, -1, -1)
    struct.pack_into(">I", out, _CRC_AT, crc32c.crc32c(bytes(out[_ATTRIBUTES_AT:])))
    return bytes(out)


def records(batch: bytes) -> list[Record]:
    """The data records of one batch (decompressed; none for a control batch)."""
    parsed = DefaultRecordBatch(batch)
    if parsed.is_control_batch:
        return []
    return [Record(r.offset, r.timestamp, r.key, r.value, tuple(r.headers or ())) for r in parsed]


def sparse(kept: list[Record], base_offset: int) -> bytes:
    """One uncompressed batch holding `kept` (ascending offsets >= base_offset) at their own offsets."""
    first_ts = min(r.timestamp_ms for r in kept)
    encoded = [_record(r.offset - base_offset, r.timestamp_ms - first_ts, r.key, r.value, r.headers) for r in kept]
    return _batch(encoded, kept[-1].offset - base_offset, first_ts, max(r.timestamp_ms for r in kept))
