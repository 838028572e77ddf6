"""One bounded queue and one background sender thread per process, between interceptors and a sink.

`emit()` is the only thing an intercepted call does with its event: a length check and a deque
append (deque.append is atomic under the GIL, so no lock on the hot path). When the queue is full
the event is dropped and counted (svcpulse_rpc_events_overflow_total): the call never blocks.
The sender thread wakes every `poll_s`, drains the queue into `sink.send("rpc", ...)`.
After fork() the child gets a fresh, empty queue and its own thread.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Any

from prometheus_client import Counter

from pipeline.events import Rejection

log = logging.getLogger("svcpulse.rpc")

OVERFLOW = Counter("svcpulse_rpc_events_overflow", "rpc events dropped because the emitter queue was full")
INVALID = Counter("svcpulse_rpc_events_invalid", "rpc events the contract rejected (an interceptor bug)")
HANDED = Counter("svcpulse_rpc_events_emitted", "rpc events handed to the sink")


class Emitter:
    def __init__(self, sink: Any = None, max_queue: int = 10_000, poll_s: float = 0.05) -> None:
        self.sink, self.max_queue, self.poll_s = sink, max_queue, poll_s
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.overflow = 0

    def emit(self, event: dict[str, Any]) -> None:
        if len(self._queue) >= self.max_queue:
            self.overflow += 1
            OVERFLOW.inc()
            return
        self._queue.append(event)

    def start(self) -> Emitter:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="svcpulse-rpc-emitter", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self._drain()
            if self._stop.is_set():
                return
            self._stop.wait(self.poll_s)

    def _drain(self) -> None:
        queue, sink = self._queue, self.sink
        while queue:
            self._idle.clear()
            event = queue.popleft()
            if sink is None:
                continue  # not configured: events are discarded (the overflow bound still holds)
            try:
                sink.send("rpc", event)
                HANDED.inc()
            except Rejection as err:
                INVALID.inc()
                log.warning("rpc event rejected by the contract: %s", err.reason)
            except Exception:  # the sink must never kill the sender thread
                log.exception("sink.send failed")
        self._idle.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the queue is handed to the sink, then flush the sink."""
        deadline = time.monotonic() + timeout_s
        while self._queue and time.monotonic() < deadline:
            time.sleep(0.005)
        self._idle.wait(max(deadline - time.monotonic(), 0.0))
        if self.sink is None:
            return not self._queue
        return bool(self.sink.flush(max(deadline - time.monotonic(), 0.0))) and not self._queue

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after a last drain; the sink stays open (it belongs to the caller)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _after_fork_in_child(self) -> None:
        self._queue = collections.deque()
        self._thread = None
        if not self._stop.is_set():
            self.start()


_default: Emitter | None = None
_lock = threading.Lock()


def configure_emitter(sink: Any, max_queue: int = 10_000, poll_s: float = 0.05) -> Emitter:
    """Set up (or re-point) the process's emitter to `sink` and start its thread."""
    global _default
    with _lock:
        if _default is None:
            _default = Emitter(sink, max_queue, poll_s)
        else:
            _default.sink, _default.max_queue, _default.poll_s = sink, max_queue, poll_s
        return _default.start()


def get_emitter() -> Emitter:
    """The process's emitter; until configure_emitter() is called events are counted and discarded."""
    global _default
    with _lock:
        if _default is None:
            _default = Emitter().start()
        return _default


def _reset_after_fork() -> None:
    if _default is not None:
        _default._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_after_fork)
