"""The hot path of `svcpulse collect tcp`: ring buffer -> batch decode -> output, and lost-event accounting.

Python does per event only what the events need: the ring buffer is read straight from its memory,
every record committed since the last read as one batch (collectors/ringbuf.py: no callback per
record), and the rest runs once per read (every --poll-interval) over the whole batch: one
iter_unpack, one name lookup per cgroup id, and for JSON lines one msgspec call that encodes every
line and one write. Events keep the
contract's fields and order (collectors/tcpevent.py). For Kafka a read is checked against the contract
once (collectors/tcpcheck.py) and encoded in one call; a rejected event is counted and reported, never fatal.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from prometheus_client import Counter

from collectors.k8s import Namer, PathNames
from collectors.ringbuf import HEADER, RingError, RingReader
from collectors.tcpcheck import ReadCheck
from collectors.tcpevent import LAYOUT, LayoutError, TcpEvent, decode_batch
from pipeline.events import Rejection

COUNTER_RING_FULL, COUNTER_MAP_FULL = 0, 1
TICK_S = 1.0

LOST = Counter(
    "svcpulse_tcplife_lost_events_total",
    "Closed TCP connections not reported: ring buffer full or socket map full",
)
EMITTED = Counter("svcpulse_tcplife_events_total", "Closed TCP connections reported")


class Output(Protocol):
    def send_batch(self, events: list[TcpEvent]) -> list[Rejection]: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class JsonLines:
    """One JSON event per line, every line of a read in one write (a pipe reader sees each connection
    within --poll-interval). Unchecked, as before: the decoder builds contract events by construction."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout.buffer  # unbuffered under PYTHONUNBUFFERED: lines are batched here
        self._encode_lines = msgspec.json.Encoder().encode_lines

    def send_batch(self, events: list[TcpEvent]) -> list[Rejection]:
        if events:
            self.stream.write(self._encode_lines(events))
            self.stream.flush()
        return []

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()


class SinkOutput:
    """The shared Kafka sink (collectors/sink.py), which queues, batches and ships the events.

    A read is checked once (collectors/tcpcheck.py: what decode_batch does not guarantee), encoded in
    one msgspec call (each event's JSON is the contract's encoding: TcpEvent has its fields in its
    order) and queued under one lock with its one key, the host. A read that may hold an event the
    contract rejects goes through the sink's per-event check instead, which rejects exactly those."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self._check = ReadCheck()
        self._encode_lines = msgspec.json.Encoder().encode_lines

    def send_batch(self, events: list[TcpEvent]) -> list[Rejection]:
        host = self._check.read_host(events)
        if host is None:
            return self._send_each(events)
        values = self._encode_lines(events).split(b"\n")  # JSON escapes newlines inside strings
        values.pop()  # after the last line's "\n"
        self.sink.send_values("tcp", host.encode(), values)
        return []

    def _send_each(self, events: list[TcpEvent]) -> list[Rejection]:
        rejected, send, as_dict = [], self.sink.send, msgspec.structs.asdict
        for event in events:
            try:
                send("tcp", as_dict(event))
            except Rejection as err:  # one odd event must not stop the others
                rejected.append(err)
        return rejected

    def flush(self) -> None:
        pass  # the sink ships (and acknowledges) on its own thread

    def close(self) -> None:
        self.sink.close()


class Collector:
    """The consume loop: ring buffer -> decode -> output, plus lost-event accounting."""

    def __init__(self, bpf: Any, output: Output, host: str, cgroup_path: Callable[[int], str],
                 names: Namer | None = None) -> None:
        self.bpf, self.output, self.host, self.cgroup_path = bpf, output, host, cgroup_path
        self.names = names or PathNames()  # cgroup path -> (workload, workload_kind), cached per path
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self.emitted = self.lost = self.rejected = self._counted = 0
        self._ticked = -TICK_S
        self.stopping = False
        self.error: str | None = None
        self.counters = bpf[b"counters"]
        events = bpf[b"events"]
        self.ring = RingReader(events.map_fd, events.max_entries, LAYOUT.format.size)

    def _cgroup_names(self, cgroup_id: int) -> tuple[str, str, str]:
        path = self.cgroup_path(cgroup_id)
        return (path, *self.names(path))

    def read(self) -> None:
        """Take every record waiting in the ring buffer and send them as one batch."""
        try:
            raw = self.ring.read()
            if not raw or self.error is not None:
                return  # nothing new, or the output broke: nothing more can leave
            events = decode_batch(raw, self.host, self._cgroup_names, self.wall_offset_ns, HEADER)
        except (RingError, LayoutError) as err:  # cannot happen with the layout checked at load; said if it does
            self.stop(f"cannot decode the ring buffer: {err}")
            return
        try:
            rejected = self.output.send_batch(events)
        except BrokenPipeError:  # e.g. `... --output jsonl | head`: the reader is gone
            self.stop()
            return
        except Exception as err:  # any failure to send ends the run, with its reason
            self.stop(f"output failed: {type(err).__name__}: {err}")
            return
        self.emitted += len(events) - len(rejected)
        if rejected and not self.rejected:
            print(f"svcpulse collect tcp: event rejected: {rejected[0].reason}", file=sys.stderr, flush=True)
        self.rejected += len(rejected)

    def stop(self, error: str | None = None) -> None:
        self.stopping = True
        self.error = self.error or error

    def tick(self, now: float | None = None) -> None:
        """Counters to Prometheus and the wall clock re-read (in case NTP stepped it): at most once per
        TICK_S from the loop (bcc's read of the per-CPU lost counters cost ~0.2 ms a time here), always
        when `now` is omitted (the last one, so the totals printed at exit are exact)."""
        if now is not None and now - self._ticked < TICK_S:
            return
        self._ticked = time.monotonic() if now is None else now
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()
        lost = sum(self.counters.sum(ctypes.c_int(i)).value for i in (COUNTER_RING_FULL, COUNTER_MAP_FULL))
        if lost > self.lost:
            LOST.inc(lost - self.lost)
            self.lost = lost
        EMITTED.inc(self.emitted - self._counted)
        self._counted = self.emitted

    def run(self, interval: float, stop: threading.Event) -> None:
        # Reading in batches every `interval` costs far less CPU than waking per event; the ring
        # buffer (--ring-pages) absorbs the events that arrive in between.
        while not self.stopping and not stop.is_set():
            self.read()
            self.tick(time.monotonic())
            stop.wait(interval)
        self.read()  # drain what is left (dropped if the output broke)
        self.tick()
