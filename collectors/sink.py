"""The one Kafka sink every collector sends through (the JSON-lines sink and what all sinks share: sink_common).

`send()` validates and encodes with the contract (collectors.encoding: the contract's checks run in
C, and a bad event raises the contract's `Rejection` at once, in the caller, where the bug is) and
appends to an in-memory queue; it never talks to Kafka. One shipper thread per sink takes batches
from the head of that queue, produces them (key = the kind's KEY_FIELD value, so a key always lands
on one partition, in order) and removes them only once Kafka acknowledged all of them.

When a batch fails (broker gone, timeouts) and a spool directory is configured, the whole queue,
the failed batch at its head, moves to the on-disk spool and every later event is appended behind
it; the shipper replays the spool in order and only when it is empty do new events go to memory
again. So there is one ordered stream at any time and per-key order holds across an outage.
Delivery is at-least-once: a batch that failed half-way is sent again whole.
Without a spool the queue is bounded in memory and the newest events are dropped when it is full.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from collectors.producers import SinkOptions, deliver, new_producer
from collectors.sink_common import METRICS, Counts, Encoded, Queued, pack_event
from collectors.spool import Position, Spool
from pipeline.events import Event

log = logging.getLogger("svcpulse.sink")


class KafkaSink:
    """Batching, compressing Kafka producer with an ordered disk spool; see the module docstring."""

    def __init__(self, bootstrap_servers: str, spool_dir: str | None, options: SinkOptions) -> None:
        self.bootstrap_servers, self.options = bootstrap_servers, options
        self._counts = Counts()
        self._spool = (
            None
            if spool_dir is None
            else Spool(
                spool_dir,
                options.spool_max_bytes,
                options.spool_segment_bytes,
                on_drop=lambda kind, n: self._counts.add("dropped", kind, n),
            )
        )
        self._lock = threading.Lock()  # send() takes it directly: `with` on a Condition is a Python call
        self._cond = threading.Condition(self._lock)
        self._memory: collections.deque[Queued] = collections.deque()
        self._spooling = bool(self._spool is not None and len(self._spool))  # an earlier run's leftovers
        self._inflight: list[Any] | None = None  # ["memory", n] or ["spool", Position]
        self._producer: Any = None
        self._healthy = True
        self._stopping = False
        self._held = False  # a broker switch is under way: ship nothing until release()
        self._reconnect = False  # the next delivery starts a fresh producer (the broker behind us changed)
        self._thread = threading.Thread(target=self._ship_loop, name="svcpulse-sink", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    # -- caller side -----------------------------------------------------------------------------
    def send(self, kind: str, event: Event) -> None:
        record = (kind, *pack_event(kind, event))
        with self._lock:
            memory = self._memory
            if not (self._spooling or self._stopping) and len(memory) < self.options.memory_queue:
                memory.append(record)  # the common case: Kafka is there, the queue has room
                if len(memory) == 1:
                    self._cond.notify_all()
            else:
                self._overflow(record)

    def send_encoded(self, kind: str, events: Iterable[Encoded]) -> None:
        """Queue events the caller checked and encoded with collectors.encoding, all under one lock (a
        receiver's whole request): the same queue, spool and order as send()."""
        self._queue([(kind, key, value) for key, value in events])

    def send_values(self, kind: str, key: bytes | None, values: list[bytes]) -> None:
        """send_encoded() for events of one key (a collector's read: key = its host), queued in C."""
        self._queue(list(zip(itertools.repeat(kind), itertools.repeat(key), values)))

    def _queue(self, records: list[Queued]) -> None:
        with self._lock:
            memory = self._memory
            room = 0 if self._spooling or self._stopping else max(self.options.memory_queue - len(memory), 0)
            fits = records[:room]
            if fits:
                was_empty = not memory
                memory.extend(fits)
                if was_empty:
                    self._cond.notify_all()
            for record in records[room:]:
                self._overflow(record)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything sent so far is acknowledged (spool included); False on timeout."""
        with self._cond:
            return self._cond.wait_for(self._drained, timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what can be delivered within `timeout_s`, keep the rest in the spool, stop."""
        self.flush(timeout_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        # the shipper may be inside one delivery: bootstrap + metadata wait + acknowledgement wait
        self._thread.join(timeout=self.options.delivery_timeout_ms / 1000 + 10)
        with self._cond:
            if self._memory and self._spool is not None:
                self._move_memory_to_spool()
            self._counts.add_records("dropped", list(self._memory))
            self._memory.clear()
            if self._spool is not None:
                self._spool.close()
        self._discard_producer()

    def hold(self, timeout_s: float = 15.0) -> bool:
        """Stop shipping: the batch in flight finishes (False if not within `timeout_s`), later events queue."""
        with self._cond:
            self._held = True
            return self._cond.wait_for(lambda: self._inflight is None, timeout=timeout_s)

    def release(self) -> None:
        """Ship again, through a fresh producer (the broker generation behind the address changed)."""
        with self._cond:
            self._held, self._reconnect = False, True
            self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        with self._cond:
            counts = {name: self._counts.by_name[name] for name in METRICS}
            counts["queued"] = len(self._memory)
            counts["spool_records"] = len(self._spool) if self._spool is not None else 0
            return counts

    # -- shared state (all called with the lock held) ----------------------------------------------
    def _overflow(self, record: Queued) -> None:
        """A record that cannot join the memory queue: spooled (the queue first), or dropped."""
        if self._stopping:
            self._counts.add("dropped", record[0])
        elif self._spooling:
            self._spool_append(record)
        elif self._spool is not None:
            self._move_memory_to_spool()
            self._spool_append(record)
        else:
            self._counts.add("dropped", record[0])

    def _drained(self) -> bool:
        return not self._memory and self._inflight is None and not (self._spool and len(self._spool))

    def _spool_append(self, record: Queued) -> Position:
        assert self._spool is not None
        kind, key, value = record
        self._counts.add("spooled", kind)
        return self._spool.append(kind, key, value)

    def _move_memory_to_spool(self) -> None:
        """Spill the queue (the in-flight batch at its head) to the spool; later events go behind it."""
        inflight_n = self._inflight[1] if self._inflight and self._inflight[0] == "memory" else 0
        for i, record in enumerate(self._memory):
            pos = self._spool_append(record)
            if i + 1 == inflight_n:  # the shipper's batch now lives in the spool: commit it there
                self._inflight = ["spool", pos]
        self._memory.clear()
        self._spooling = True

    def _take_batch(self) -> list[Queued]:
        n = self.options.batch_records
        if self._memory:
            batch = list(itertools.islice(self._memory, n))
            self._inflight = ["memory", len(batch)]
            return batch
        if self._spool is not None and len(self._spool):
            batch, pos = self._spool.read(n)
            self._inflight = ["spool", pos] if batch else None
            return batch
        self._spooling = False
        return []

    def _finish(self, batch: list[Queued], ok: bool) -> None:
        where, ticket = self._inflight or ("", None)
        self._inflight = None
        if ok:
            self._counts.add_records("sent", batch)
            if where == "memory":
                popleft = self._memory.popleft
                for _ in itertools.repeat(None, ticket):
                    popleft()
            elif where == "spool":
                self._counts.add_records("replayed", batch)
                self._spool.commit(ticket)  # type: ignore[union-attr]
                if not len(self._spool):  # type: ignore[arg-type]
                    self._spooling = False
        elif where == "memory" and self._spool is not None:
            self._move_memory_to_spool()  # the failed batch is still at the queue's head
        self._cond.notify_all()

    # -- shipper thread ---------------------------------------------------------------------------
    def _ship_loop(self) -> None:
        self._connect_early()
        backoff = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or not (self._held or self._drained()), timeout=1.0)
                if self._stopping:  # close() flushed first; what is left stays for the spool
                    return
                batch = [] if self._held else self._take_batch()
                if not batch:
                    self._cond.wait(timeout=0.1)
                    continue
            ok = self._deliver(batch)
            with self._cond:
                self._finish(batch, ok)
                if not ok:
                    backoff = min(max(backoff * 2, 0.25), self.options.retry_backoff_max_s)
                    self._cond.wait_for(lambda: self._stopping, timeout=backoff)
                else:
                    backoff = 0.0

    def _deliver(self, batch: list[Queued]) -> bool:
        """Produce the batch and wait for every acknowledgement; False on any failure."""
        if self._reconnect:
            self._reconnect = False
            self._discard_producer()
        try:
            producer = self._producer or self._new_producer()
            deliver(producer, batch, self.options.delivery_timeout_ms / 1000 + 2)
        except Exception as err:  # any client error means: not delivered, keep it, retry later
            if self._healthy:
                log.warning("kafka at %s unavailable (%s); spooling", self.bootstrap_servers, err)
            self._healthy = False
            self._discard_producer()  # a fresh producer re-bootstraps (a restarted broker, new ids)
            return False
        if not self._healthy:
            log.warning("kafka at %s is back; replaying in order", self.bootstrap_servers)
        self._healthy = True
        return True

    def _connect_early(self) -> None:
        """Open the producer before the first batch: connecting (and the idempotent producer's id) took
        long enough at 40,000 events/s to fill the memory queue and drop 2,000 events. A broker that is
        not there yet is no error here: the first delivery tries again."""
        try:
            self._new_producer()
        except Exception as err:  # any client error: the shipper's usual path reports and retries it
            log.debug("kafka at %s not reachable at start (%s)", self.bootstrap_servers, err)

    def _new_producer(self) -> Any:
        self._producer = new_producer(self.bootstrap_servers, self.options)
        return self._producer

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout_s=0)  # never raises (core.kafka's contract)


_LIVE: weakref.WeakSet[KafkaSink] = weakref.WeakSet()  # every open KafkaSink of this process


@contextlib.contextmanager
def sinks_held(bootstrap_servers: str, timeout_s: float = 15.0) -> Iterator[int]:
    """Hold every KafkaSink of this process that ships to `bootstrap_servers` (yields how many), then
    release them: the embedded broker switches generations inside, with no batch in flight."""
    sinks = [sink for sink in list(_LIVE) if sink.bootstrap_servers == bootstrap_servers and not sink._stopping]
    for sink in sinks:
        sink.hold(timeout_s=0)  # every sink stops taking batches at once ...
    deadline = time.monotonic() + timeout_s
    for sink in sinks:  # ... then each in-flight batch is waited for
        if not sink.hold(timeout_s=max(deadline - time.monotonic(), 0)):
            log.warning("a batch to %s is still in flight at the broker switch; it is retried after", bootstrap_servers)
    try:
        yield len(sinks)
    finally:
        for sink in sinks:
            sink.release()


def open_sink(bootstrap_servers: str, spool_dir: str | None = None, **opts: Any) -> KafkaSink:
    """A started KafkaSink; `opts` are SinkOptions fields (unknown names raise TypeError)."""
    return KafkaSink(bootstrap_servers, spool_dir, SinkOptions(**opts))
