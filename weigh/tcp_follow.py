"""The weigh worker's view of callers' connections: svcpulse.tcp, every partition, no group.

svcpulse.tcp is keyed by the observing host, not by the service called, so a worker cannot read only
its own services' share: each worker assigns itself every partition, starting `window_s` + slack ago
(found by time, as its rpc take-over does) when the first service wants connections (the worker
does not read the topic at all before), and keeps only what weights/tcp_window.py wants
(client-side connections with a known outcome, to the ports of IP instances of services not on
signal "rpc"). The cheap checks run on the parsed JSON before the contract's validation, so a busy
host's other connections cost one parse each and nothing else. No ClickHouse query is involved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from pipeline import events, topics
from weigh import metrics
from weigh.kafka import offsets_at_time, reader
from weights.tcp_window import TcpWindows

log = logging.getLogger("svcpulse.weigh")
REPLAY_SLACK_S = 5  # events reach Kafka a little after their close time (collector poll, sink linger)


class TcpFollower:
    def __init__(self, client: str, bootstrap: str, windows: TcpWindows, client_id: str,
                 loads: Callable[[bytes], Any] = orjson.loads) -> None:
        self.windows, self._loads = windows, loads
        self.consumer = reader(client, bootstrap, client_id)
        self._assigned = False

    def _assign(self) -> None:
        """Every partition of svcpulse.tcp, from window_s + slack ago (a new or restarted worker judges
        connections at once, with no cold window)."""
        partitions = self.consumer.partitions_for(topics.TCP)
        if not partitions:
            return  # the topic does not exist yet: no collector has sent anything
        since_ms = int(time.time() * 1000) - (self.windows.window_s + REPLAY_SLACK_S) * 1000
        starts = offsets_at_time(self.consumer, {(topics.TCP, p): since_ms for p in partitions})
        self.consumer.assign(dict(starts))
        self._assigned = True
        log.info("weigh: following %s (%d partitions) for connection health", topics.TCP, len(partitions))

    def poll(self, now_ms: int) -> int:
        """Read what is waiting (without blocking) into the windows; the number of events counted."""
        if not self._assigned:
            self._assign()
            if not self._assigned:
                return 0
        counted = 0
        for message in self.consumer.poll(0):
            event = self._wanted(message.value)
            if event is not None and self.windows.add(event, now_ms):
                counted += 1
        metrics.TCP_EVENTS.inc(counted)
        return counted

    def _wanted(self, value: bytes | None) -> dict[str, Any] | None:
        try:
            obj = self._loads(value or b"")
        except ValueError:
            return None  # the loader dead-letters it
        if not isinstance(obj, dict) or obj.get("role") != "client" or obj.get("rport") not in self.windows.ports:
            return None
        try:
            return events.validate("tcp", obj)
        except events.Rejection:
            metrics.TCP_REJECTED.inc()
            return None

    def close(self) -> None:
        self.consumer.close()
