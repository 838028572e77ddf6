"""The collector's batch path without a kernel: ring-buffer spans (collectors/ringbuf.committed), a whole
read decoded at once (collectors/tcpevent.decode_batch), written as JSON lines (tcpstream.JsonLines) or
checked once and handed to the Kafka sink encoded (tcpstream.SinkOutput, collectors/tcpcheck.py)."""

from __future__ import annotations

import errno
import io
import random
import struct

import msgspec
import orjson
import pytest
from test_tcplife_unit import decode, raw_event

from collectors import ringbuf, tcpevent
from collectors.sink_common import pack_event
from collectors.tcpcheck import ReadCheck
from collectors.tcpstream import JsonLines, SinkOutput
from pipeline.events import Rejection, validate

SIZE = tcpevent.LAYOUT.format.size
STRIDE = ringbuf.HEADER + SIZE  # 136: the ring's 8-byte alignment adds nothing to a 128-byte event


def ring_record(sample: bytes, flags: int = 0) -> bytes:
    """A record as the kernel lays it out: length (with BUSY/DISCARD bits), page offset, sample."""
    return struct.pack("<II", len(sample) | flags, 0) + sample + b"\0" * (-len(sample) % 8)


RECORDS = [
    raw_event(4, "10.1.2.3", "10.9.8.7", cgroup_id=42),
    raw_event(4, "10.1.2.3", "10.9.8.7", cgroup_id=42, established=0, connect_ns=0, sk_err=errno.ECONNREFUSED,
              resets_in=1),
    raw_event(6, "fe80::1", "2001:db8::2", role=2, cgroup_id=7),
]


def test_a_batch_decodes_every_event_in_order_naming_each_cgroup_once() -> None:
    asked: list[int] = []

    def cgroup_names(cgroup_id: int) -> tuple[str, str, str]:
        asked.append(cgroup_id)
        return {42: ("/web", "web", "cgroup"), 7: ("/db", "db", "cgroup")}[cgroup_id]

    events = [msgspec.structs.asdict(e) for e in tcpevent.decode_batch(b"".join(RECORDS), "n", cgroup_names, 0)]
    assert events == [decode(raw, cgroups={42: "/web", 7: "/db"}) for raw in RECORDS]
    assert [e["outcome"] for e in events] == ["ok", "refused", "ok"]
    assert asked == [42, 7]
    assert all(validate("tcp", e) == e for e in events)


def test_ring_records_decode_after_their_headers() -> None:
    span = b"".join(ring_record(raw) for raw in RECORDS)
    names = lambda _id: ("", "", "")  # noqa: E731
    assert tcpevent.decode_batch(span, "n", names, 0, header=ringbuf.HEADER) == tcpevent.decode_batch(
        b"".join(RECORDS), "n", names, 0)
    with pytest.raises(tcpevent.LayoutError, match="not a whole number of 136-byte records"):
        tcpevent.decode_batch(span[:-8], "n", names, 0, header=ringbuf.HEADER)


def test_committed_takes_every_record_when_all_are_done() -> None:
    span = b"".join(ring_record(raw) for raw in RECORDS)
    assert ringbuf.committed(span, SIZE) == (span, 3 * STRIDE)


def test_committed_stops_at_a_record_still_being_written_and_skips_discarded_ones() -> None:
    first, third = ring_record(RECORDS[0]), ring_record(RECORDS[2])
    busy = ring_record(RECORDS[0], ringbuf.BUSY)
    span = first + ring_record(RECORDS[1], ringbuf.DISCARD) + third + busy + first
    assert ringbuf.committed(span, SIZE) == (first + third, 3 * STRIDE)  # the discarded one is consumed
    assert ringbuf.committed(first + busy[:4], SIZE) == (first, STRIDE)  # a header cut short waits too


def test_committed_refuses_a_record_of_another_size() -> None:
    with pytest.raises(ringbuf.RingError, match="ring record of 64 bytes, expected 128"):
        ringbuf.committed(ring_record(RECORDS[0]) + ring_record(b"x" * 64), SIZE)


def test_json_lines_are_one_write_of_contract_events() -> None:
    class Stream(io.BytesIO):
        writes = 0

        def write(self, data: bytes) -> int:  # type: ignore[override]
            Stream.writes += 1
            return super().write(data)

    stream = Stream()
    events = tcpevent.decode_batch(b"".join(RECORDS), "n", lambda _id: ("/web", "web", "cgroup"), 0)
    assert JsonLines(stream).send_batch(events) == []
    lines = stream.getvalue().splitlines()
    assert Stream.writes == 1 and len(lines) == 3
    assert [orjson.loads(line) for line in lines] == [msgspec.structs.asdict(e) for e in events]
    assert all(validate("tcp", orjson.loads(line)) for line in lines)


class Recorded:
    """The Sink protocol's two sending calls, recorded (what SinkOutput hands the Kafka sink)."""

    def __init__(self) -> None:
        self.encoded: list[tuple[str, bytes | None, bytes]] = []
        self.sent: list[dict] = []

    def send(self, kind: str, event: dict) -> None:
        pack_event(kind, event)  # the sink's own per-event check: raises the contract's Rejection
        self.sent.append(event)

    def send_values(self, kind: str, key: bytes | None, values: list[bytes]) -> None:
        self.encoded += [(kind, key, value) for value in values]


def test_kafka_output_ships_a_read_encoded_at_once_byte_for_byte_as_the_contract() -> None:
    events = tcpevent.decode_batch(b"".join(RECORDS), "node-1", lambda _id: ("/web", "web", "cgroup"), 0)
    recorded = Recorded()
    assert SinkOutput(recorded).send_batch(events) == []
    # the former path: each event as a dict through the sink's contract check and encoding
    assert recorded.encoded == [("tcp", *pack_event("tcp", msgspec.structs.asdict(e))) for e in events]
    assert [key for _kind, key, _value in recorded.encoded] == [b"node-1"] * 3 and not recorded.sent


def test_a_read_with_a_rejected_event_goes_event_by_event_and_rejects_only_that_one() -> None:
    names = {42: ("/web", "web", "cgroup"), 7: ("/bad", "bad\x07name", "cgroup")}  # a control character
    events = tcpevent.decode_batch(b"".join(RECORDS), "n", names.__getitem__, 0)
    recorded = Recorded()
    rejected = SinkOutput(recorded).send_batch(events)
    assert len(rejected) == 1 and isinstance(rejected[0], Rejection) and "workload" in rejected[0].reason
    assert [e["cgroup"] for e in recorded.sent] == ["/web", "/web"] and not recorded.encoded


NAMES = [("/a", "a", "cgroup"), ("/b" * 3000, "b", "cgroup"), ("/c", "c\nd", "cgroup"), ("/d", "d", "Bad Kind"),
         ("", "", "")]


def random_record(rng: random.Random) -> bytes:
    """Random bytes in every field; most records get the fields tcpcheck watches in range, so both of its
    answers occur."""
    fields = dict(zip(tcpevent.LAYOUT.names, tcpevent.LAYOUT.format.unpack(rng.randbytes(SIZE)), strict=True))
    if rng.random() < 0.8:
        fields.update(ts_ns=rng.randrange(2**50), family=rng.choice((4, 6)), tx_bytes=rng.randrange(2**63),
                      rx_bytes=rng.randrange(2**63))
    return tcpevent.LAYOUT.format.pack(*fields.values())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_decoded_record_passes_the_read_check_that_the_contract_rejects(seed: int) -> None:
    """Random kernel records (every byte pattern of every field) and node names, good and bad: whatever
    tcpcheck lets through unchecked per event, the contract accepts; what it holds back, it may reject."""
    rng = random.Random(seed)
    raw = b"".join(random_record(rng) for _ in range(2000))
    events = tcpevent.decode_batch(raw, "node", lambda cgroup_id: NAMES[cgroup_id % len(NAMES)], rng.randrange(2**62))
    check, passed = ReadCheck(), 0
    for event in events:
        if check.read_host([event]) is not None:
            validate("tcp", msgspec.structs.asdict(event))  # raises if the check let a bad one through
            passed += 1
    assert 0 < passed < len(events)  # both sides were exercised
    assert check.read_host(events) is None  # a read with one bad event is not passed whole
