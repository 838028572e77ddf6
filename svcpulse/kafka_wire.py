"""The few Kafka protocol requests a broker generation roll needs, spoken directly on one socket.

Rolling the embedded broker (svcpulse/broker_roll.py) copies a partition's tail batch by batch with
its offsets unchanged, and writes the groups' committed offsets into the new broker. No client
library exposes raw record batches or offset-preserving produce, so this module encodes the
requests itself: the non-flexible versions every broker since Kafka 2.x (and Kafka 4.0's baseline)
accepts. Responses are parsed as far as the roll reads them; any error code raises WireError.
"""

from __future__ import annotations

import itertools
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
Partitions = dict[tuple[str, int], int]  # (topic, partition) -> offset

_PRODUCE, _FETCH, _METADATA, _OFFSET_COMMIT, _OFFSET_FETCH = 0, 1, 3, 8, 9
_DESCRIBE_GROUPS, _LIST_GROUPS, _CREATE_TOPICS, _DESCRIBE_CONFIGS = 15, 16, 19, 32
_FETCH_WAIT_MS = 10  # a fetch at the end of a partition returns after this


class WireError(RuntimeError):
    """The broker answered with an error code, or the connection broke."""


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _array(items: Iterable[T], encode: Callable[[T], bytes]) -> bytes:
    encoded = [encode(item) for item in items]
    return struct.pack(">i", len(encoded)) + b"".join(encoded)


class _Reader:
    """Reads the big-endian fields of a response in order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _unpack(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def i8(self) -> int:
        return int(self._unpack(">b"))

    def i16(self) -> int:
        return int(self._unpack(">h"))

    def i32(self) -> int:
        return int(self._unpack(">i"))

    def i64(self) -> int:
        return int(self._unpack(">q"))

    def string(self) -> str | None:
        size = self.i16()
        if size < 0:
            return None
        self.pos += size
        return self.data[self.pos - size:self.pos].decode()

    def raw(self) -> bytes | None:
        size = self.i32()
        if size < 0:
            return None
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def array(self, read: Callable[[], T]) -> list[T]:
        return [read() for _ in range(max(self.i32(), 0))]


def _check(error_code: int, what: str) -> None:
    if error_code:
        raise WireError(f"{what}: Kafka error code {error_code}")


class Connection:
    """One blocking connection to one broker; requests are answered in order."""

    def __init__(self, bootstrap: str, timeout_s: float = 30.0) -> None:
        host, port = bootstrap.rsplit(":", 1)
        try:
            self._sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        except OSError as err:
            raise WireError(f"cannot reach {bootstrap}: {err}") from None
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, api_key: int, version: int, body: bytes) -> _Reader:
        correlation = next(self._ids)
        request = struct.pack(">hhi", api_key, version, correlation) + _string("svcpulse-roll") + body
        try:
            self._sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", self._read(4))[0]
            reply = _Reader(self._read(size))
        except OSError as err:
            raise WireError(f"request {api_key}: {err}") from None
        if reply.i32() != correlation:
            raise WireError(f"request {api_key}: answer out of order")
        return reply

    def _read(self, size: int) -> bytes:
        buf = bytearray()
        while len(buf) < size:
            chunk = self._sock.recv(size - len(buf))
            if not chunk:
                raise WireError("the broker closed the connection")
            buf += chunk
        return bytes(buf)

    # -- topics -------------------------------------------------------------------------------
    def topics(self) -> dict[str, int]:
        """Every topic and its partition count (Metadata v1, all topics)."""
        reply = self._call(_METADATA, 1, struct.pack(">i", -1))
        reply.array(lambda: (reply.i32(), reply.string(), reply.i32(), reply.string()))  # brokers
        reply.i32()  # controller

        def topic() -> tuple[str, int]:
            reply.i16()
            name, _internal = reply.string() or "", reply.i8()
            partitions = reply.array(lambda: (reply.i16(), reply.i32(), reply.i32(),
                                              reply.array(reply.i32), reply.array(reply.i32)))
            return name, len(partitions)
        return dict(reply.array(topic))

    def topic_configs(self, topic: str) -> dict[str, str]:
        """The topic's configs, e.g. cleanup.policy (DescribeConfigs v1)."""
        body = _array([topic], lambda name: struct.pack(">b", 2) + _string(name) + struct.pack(">i", -1))
        reply = self._call(_DESCRIBE_CONFIGS, 1, body + b"\x00")
        reply.i32()
        configs: dict[str, str] = {}

        def resource() -> None:
            _check(reply.i16(), f"describe configs of {topic}")
            reply.string(), reply.i8(), reply.string()

            def entry() -> None:
                name, value = reply.string() or "", reply.string()
                reply.i8(), reply.i8(), reply.i8()  # read-only, source, sensitive
                reply.array(lambda: (reply.string(), reply.string(), reply.i8()))  # synonyms
                if value is not None:  # Tansu lists only what was set on the topic
                    configs[name] = value
            reply.array(entry)
        reply.array(resource)
        return configs

    def create_topic(self, topic: str, partitions: int, configs: dict[str, str]) -> None:
        """CreateTopics v2 with the configs given; a topic that exists already is left alone."""
        body = (_string(topic) + struct.pack(">ihi", partitions, 1, 0)
                + _array(configs.items(), lambda kv: _string(kv[0]) + _string(kv[1])))
        reply = self._call(_CREATE_TOPICS, 2, struct.pack(">i", 1) + body + struct.pack(">ib", 30_000, 0))
        reply.i32()
        for _name, error, message in reply.array(lambda: (reply.string(), reply.i16(), reply.string())):
            if error not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS
                raise WireError(f"create topic {topic}: Kafka error code {error} {message or ''}")

    # -- groups -------------------------------------------------------------------------------
    def groups(self) -> list[str]:
        """Every consumer group the broker knows (ListGroups v0)."""
        reply = self._call(_LIST_GROUPS, 0, b"")
        _check(reply.i16(), "list groups")
        return [name for name, _type in reply.array(lambda: (reply.string() or "", reply.string()))]

    def group_states(self, groups: list[str]) -> dict[str, str]:
        """Each group's state: "Stable", "Empty" (no member) ... (DescribeGroups v0)."""
        reply = self._call(_DESCRIBE_GROUPS, 0, _array(groups, _string))

        def group() -> tuple[str, str]:
            reply.i16()
            name, state = reply.string() or "", reply.string() or ""
            reply.string(), reply.string()
            reply.array(lambda: (reply.string(), reply.string(), reply.string(), reply.raw(), reply.raw()))
            return name, state
        return dict(reply.array(group))

    def committed(self, group: str, topics: dict[str, int]) -> Partitions:
        """The group's committed offsets in these topics (OffsetFetch v1); partitions without one are left out."""
        body = _string(group) + _array(topics.items(), lambda t: _string(t[0]) + _array(range(t[1]), _i32))
        reply = self._call(_OFFSET_FETCH, 1, body)
        offsets: Partitions = {}

        def topic() -> None:
            name = reply.string() or ""
            for partition, offset, _meta, error in reply.array(
                    lambda: (reply.i32(), reply.i64(), reply.string(), reply.i16())):
                if not error and offset >= 0:
                    offsets[(name, partition)] = offset
        reply.array(topic)
        return offsets

    def commit(self, group: str, offsets: Partitions) -> None:
        """Commit offsets for a group with no member in this broker yet (OffsetCommit v2, generation -1)."""
        by_topic: dict[str, list[tuple[int, int]]] = {}
        for (topic, partition), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append((partition, offset))
        body = (_string(group) + struct.pack(">i", -1) + _string("") + struct.pack(">q", -1)
                + _array(by_topic.items(), lambda t: _string(t[0]) + _array(
                    t[1], lambda p: struct.pack(">iq", *p) + _string(""))))
        reply = self._call(_OFFSET_COMMIT, 2, body)
        for _topic, results in reply.array(lambda: (reply.string(), reply.array(lambda: (reply.i32(), reply.i16())))):
            for _partition, error in results:
                _check(error, f"commit offsets of group {group}")

    # -- records ------------------------------------------------------------------------------
    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 4 << 20,
              wait_ms: int = _FETCH_WAIT_MS) -> tuple[int, bytes]:
        """(high watermark, raw record batches from `offset` on) with Fetch v4; b"" at the end.

        The high watermark comes from the fetch answer: Tansu's ListOffsets counts record batches,
        its fetch answer counts records, as Kafka does. Tansu may leave the partition out of its
        answer (nothing gathered within `wait_ms`): then (`offset`, b"").
        """
        answered = self._fetch(topic, partition, offset, max_bytes, wait_ms)
        return answered if answered is not None else (offset, b"")

    def end_offset(self, topic: str, partition: int, attempts: int = 20) -> int:
        """The partition's high watermark, asked again while Tansu leaves the partition out."""
        for attempt in range(attempts):
            if (answered := self._fetch(topic, partition, 0, 1, _FETCH_WAIT_MS)) is not None:
                return answered[0]
            time.sleep(0.05 * (attempt + 1))
        raise WireError(f"{topic}[{partition}]: no fetch answer, so no end offset")

    def _fetch(self, topic: str, partition: int, offset: int, max_bytes: int,
               wait_ms: int) -> tuple[int, bytes] | None:
        body = (struct.pack(">iiiib", -1, wait_ms, 1, max_bytes, 0)
                + _array([topic], lambda t: _string(t) + _array(
                    [partition], lambda p: struct.pack(">iqi", p, offset, max_bytes))))
        reply = self._call(_FETCH, 4, body)
        reply.i32()
        answered = [part for _topic, parts in reply.array(lambda: (reply.string(), reply.array(self._fetched(reply))))
                    for part in parts]
        if not answered:
            return None
        error, high, raw = answered[0]
        _check(error, f"fetch {topic}[{partition}]@{offset}")
        return high, raw or b""

    @staticmethod
    def _fetched(reply: _Reader) -> Callable[[], tuple[int, int, bytes | None]]:
        def partition() -> tuple[int, int, bytes | None]:
            reply.i32()
            error, high = reply.i16(), reply.i64()
            reply.i64()
            reply.array(lambda: (reply.i64(), reply.i64()))  # aborted transactions
            return error, high, reply.raw()
        return partition

    def produce(self, topic: str, partition: int, batch: bytes) -> int:
        """Append one record batch as it is (Produce v3, acks=all); returns the offset the broker gave it."""
        body = (_string(None) + struct.pack(">hi", -1, 30_000)
                + _array([topic], lambda t: _string(t) + _array(
                    [partition], lambda p: struct.pack(">ii", p, len(batch)) + batch)))
        reply = self._call(_PRODUCE, 3, body)
        found = reply.array(lambda: (reply.string(), reply.array(
            lambda: (reply.i32(), reply.i16(), reply.i64(), reply.i64()))))
        _partition, error, base_offset, _append_time = found[0][1][0]
        _check(error, f"produce to {topic}[{partition}]")
        return base_offset


def _i32(value: int) -> bytes:
    return struct.pack(">i", value)


def batches(records: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(base offset, last offset, batch bytes) of each complete v2 batch in a fetch answer."""
    pos = 0
    while pos + 12 <= len(records):
        base, length = struct.unpack_from(">qi", records, pos)
        end = pos + 12 + length
        if end > len(records):  # a fetch may end with a partial batch
            return
        last_delta = struct.unpack_from(">i", records, pos + 23)[0]
        yield base, base + last_delta, records[pos:end]
        pos = end
