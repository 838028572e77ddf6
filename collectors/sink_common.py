"""What every svcpulse sink shares - the Sink protocol, the queued-record shapes, the counters - and the
JSON-lines sink (`--output jsonl`). The Kafka sink with its disk spool is collectors/sink.py.
"""

from __future__ import annotations

import collections
import operator
import threading
from collections.abc import Iterable
from typing import Protocol, TextIO

from prometheus_client import Counter

from collectors.encoding import Packer, packer
from pipeline.events import Event
from pipeline.topics import KEY_FIELD

_KIND = operator.itemgetter(0)
# What the memory queue holds: a spool Record's fields as a plain tuple, a fifth of a Record's cost to build
# (the collectors queue one per event). A Record is one too: batches read back from the spool are lists of them.
Queued = tuple[str, bytes | None, bytes]  # (kind, key, value)

SENT = Counter("svcpulse_sink_sent", "Events acknowledged by Kafka (or written, for jsonl)", ["kind"])
SPOOLED = Counter("svcpulse_sink_spooled", "Events written to the disk spool", ["kind"])
DROPPED = Counter("svcpulse_sink_dropped", "Events lost: queue or spool full, or undeliverable", ["kind"])
REPLAYED = Counter("svcpulse_sink_replayed", "Spooled events later acknowledged by Kafka", ["kind"])
METRICS = {"sent": SENT, "spooled": SPOOLED, "dropped": DROPPED, "replayed": REPLAYED}


Encoded = tuple[bytes | None, bytes]  # (message key, value) of an event checked and encoded by collectors.encoding


class Sink(Protocol):
    def send(self, kind: str, event: Event) -> None: ...
    def send_encoded(self, kind: str, events: Iterable[Encoded]) -> None: ...
    def send_values(self, kind: str, key: bytes | None, values: list[bytes]) -> None: ...
    def flush(self, timeout_s: float = 10.0) -> bool: ...
    def close(self, timeout_s: float = 10.0) -> None: ...
    def stats(self) -> dict[str, int]: ...


class Counts:
    """Per-sink counters that also feed the process-wide prometheus counters."""

    def __init__(self) -> None:
        self.by_name: collections.Counter[str] = collections.Counter()

    def add(self, name: str, kind: str, n: int = 1) -> None:
        if n:
            self.by_name[name] += n
            METRICS[name].labels(kind=kind).inc(n)

    def add_records(self, name: str, records: list[Queued]) -> None:
        for kind, n in collections.Counter(map(_KIND, records)).items():
            self.add(name, kind, n)


_PACKERS: dict[str, Packer] = {}


def pack_event(kind: str, event: Event) -> tuple[bytes | None, bytes]:
    """(key, wire bytes) of an event, or the contract's Rejection (an unknown kind included)."""
    pack = _PACKERS.get(kind)
    if pack is None:
        pack = _PACKERS.setdefault(kind, packer(kind, KEY_FIELD.get(kind)))
    return pack(event)


class JsonlSink:
    """Writes each valid event as one compact JSON line (for `--output jsonl`, pipes and debugging)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream, self._lock, self._counts = stream, threading.Lock(), Counts()

    def send(self, kind: str, event: Event) -> None:
        self.send_encoded(kind, [pack_event(kind, event)])

    def send_encoded(self, kind: str, events: Iterable[Encoded]) -> None:
        self._write(kind, [value.decode() + "\n" for _key, value in events])

    def send_values(self, kind: str, key: bytes | None, values: list[bytes]) -> None:
        self._write(kind, [value.decode() + "\n" for value in values])

    def _write(self, kind: str, lines: list[str]) -> None:
        with self._lock:
            self._stream.writelines(lines)
            self._counts.add("sent", kind, len(lines))

    def flush(self, timeout_s: float = 10.0) -> bool:
        with self._lock:
            self._stream.flush()
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        self.flush()  # the stream belongs to the caller (often stdout): not closed here

    def stats(self) -> dict[str, int]:
        return {name: self._counts.by_name[name] for name in METRICS}
