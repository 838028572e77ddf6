"""Is loading making progress? The readiness verdict of a loader, seen from inside and from outside.

A loader is stalled when, for `stall_s` seconds, it committed nothing while messages waited for it
(lag above zero and not shrinking): the store rejects or is down, the loader is stuck in a retry, or
no loader runs at all. An idle loader (lag 0) is ready.

- Progress: the loader's own view (its commits and the lag it measures), served at its /readyz.
- GroupProgress: the view from any process that can reach Kafka, from the loader group's committed
  offsets against the topics' end offsets, sampled over time (the API's /readyz uses it).
- loader_verdict: what the API asks. When the loader runs in the same process (`svcpulse up`), its
  own Progress answers and nothing samples Kafka.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import cache

from core.kafka import Consumer, KafkaClientError, open_consumer
from pipeline.topics import LOADED_TOPICS

Clock = Callable[[], float]
READY = "ok"


class Progress:
    """Commits and lag observed over time; verdict() says whether loading is stalled."""

    def __init__(self, stall_s: float, clock: Clock = time.monotonic) -> None:
        self.stall_s, self.clock = stall_s, clock
        self._lock = threading.Lock()
        self._moved_at = clock()  # last commit, or last time the backlog shrank or emptied
        self._lag = 0

    def committed(self) -> None:
        with self._lock:
            self._moved_at = self.clock()

    def lag(self, lag: int) -> None:
        with self._lock:
            if lag == 0 or lag < self._lag:
                self._moved_at = self.clock()
            self._lag = lag

    def verdict(self) -> str:
        """"ok", or why loading counts as stalled."""
        with self._lock:
            idle_for = self.clock() - self._moved_at
            if self._lag > 0 and idle_for >= self.stall_s:
                return (f"no progress for {idle_for:.0f} s while {self._lag} message(s) wait "
                        f"(stalled after {self.stall_s:g} s)")
            return READY


class GroupProgress:
    """The loader group's progress, read from Kafka (committed vs end offsets) every `every_s` seconds by
    a daemon thread, so /readyz answers at once from the last sample and never waits on Kafka. The
    thread runs while someone asks (it ends after IDLE_S without a question, and the next one restarts it)."""

    IDLE_S = 120.0

    def __init__(self, client: str, bootstrap: str, group_id: str, stall_s: float, every_s: float = 5.0,
                 clock: Clock = time.monotonic) -> None:
        self.client, self.bootstrap, self.group_id, self.every_s = client, bootstrap, group_id, every_s
        self.progress = Progress(stall_s, clock)
        self._committed_total: int | None = None
        self._error = ""
        self._sampler: threading.Thread | None = None
        self._lock = threading.Lock()
        self._clock = clock
        self._asked_at = clock()

    def verdict(self) -> str:
        with self._lock:
            self._asked_at = self._clock()
            if self._sampler is None:  # started by the first question: a process that never asks pays nothing
                self._sampler = threading.Thread(target=self._sample_forever, name="loader-progress", daemon=True)
                self._sampler.start()
        return self._error or self.progress.verdict()

    def _sample_forever(self) -> None:
        consumer = None
        while self._clock() - self._asked_at < self.IDLE_S:
            try:
                consumer = consumer or open_consumer(self.client, self.bootstrap, self.group_id,
                                                     client_id="svcpulse-readyz")
                self._record(*self._read(consumer))
                self._error = ""
            except KafkaClientError as err:
                self._error = f"loader progress unknown: {err}"
            time.sleep(self.every_s)
        if consumer is not None:
            consumer.close()
        with self._lock:
            self._sampler = None

    def _record(self, committed_total: int, lag: int) -> None:
        if self._committed_total is not None and committed_total > self._committed_total:
            self.progress.committed()
        self._committed_total = committed_total
        self.progress.lag(lag)

    @staticmethod
    def _read(consumer: Consumer) -> tuple[int, int]:
        """(sum of committed offsets, messages not yet committed) over every loaded partition."""
        partitions = {(topic, p) for topic in LOADED_TOPICS for p in consumer.partitions_for(topic)}
        if not partitions:
            return 0, 0
        committed = consumer.committed(partitions)
        total = lag = 0
        for tp in partitions:
            low, high = consumer.watermarks(tp)
            done = committed.get(tp)
            done = low if done is None else done
            total += done
            lag += max(0, high - done)  # Tansu's high watermark trails by up to a batch: never below 0
        return total, lag


_LOCAL: dict[tuple[str, str], Progress] = {}  # (bootstrap, group) -> a loader running in this process


def register_local(bootstrap: str, group_id: str, progress: Progress | None) -> None:
    """A loader announces (or, with None, withdraws) its Progress for in-process readiness questions."""
    if progress is None:
        _LOCAL.pop((bootstrap, group_id), None)
    else:
        _LOCAL[(bootstrap, group_id)] = progress


def loader_verdict(client: str, bootstrap: str, group_id: str, stall_s: float) -> str:
    """"ok", or why the loader group counts as stalled: from an in-process loader, else from Kafka."""
    local = _LOCAL.get((bootstrap, group_id))
    return local.verdict() if local is not None else group_progress(client, bootstrap, group_id, stall_s).verdict()


@cache
def group_progress(client: str, bootstrap: str, group_id: str, stall_s: float) -> GroupProgress:
    """One GroupProgress per loader group in this process (its history is what the verdict needs)."""
    return GroupProgress(client, bootstrap, group_id, stall_s)
