"""What a weigh worker sends: feeds (on change + heartbeats), tombstones, and canary aborts for the lease holder.

Keeps svcpulse.weights small: an unchanged feed is sent again only every `weights_heartbeat_cycles`
cycles, so readers can tell a live feed from a dead worker's (the API marks a feed older than
`weights_stale_cycles` cycles stale). A service this worker forgets gets a tombstone (null value),
which compaction turns into nothing; a service that moved to another worker gets none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from core.settings import Settings
from pipeline import topics
from weigh import metrics
from weigh.kafka import Producer
from weights import control, message
from weights.control import ControlView
from weights.model import EngineState


class Publisher:
    def __init__(self, producer: Producer, worker: str, settings: Settings) -> None:
        self.producer, self.worker = producer, worker
        self.heartbeat_ms = int(settings.weights_heartbeat_cycles * settings.weights_interval_s * 1000)
        self.last: dict[str, tuple[str, int, str]] = {}  # service -> (revision, sent at ms, stale reason)

    def feed(self, service: str, feed: Mapping[str, Any], state: EngineState, seen: Sequence[Sequence[Any]],
             stale: str, now_ms: int) -> None:
        last = self.last.get(service)
        changed = last is None or last[0] != feed["revision"] or last[2] != stale
        if not changed and now_ms - last[1] < self.heartbeat_ms:  # type: ignore[index]
            return
        value = message.encode(feed, state, self.worker, seen, stale)
        self.producer.produce(topics.WEIGHTS, value, key=service.encode())
        self.last[service] = (feed["revision"], now_ms, stale)
        metrics.PUBLISHED.labels("change" if changed else "heartbeat").inc()

    def forget(self, owned: Callable[[str], bool], current: set[str]) -> None:
        """Tombstones for owned services no longer computed (every instance forgotten, service deleted)."""
        for service in [s for s in self.last if owned(s) and s not in current]:
            self.producer.produce(topics.WEIGHTS, None, key=service.encode())  # type: ignore[arg-type]
            del self.last[service]
            metrics.PUBLISHED.labels("tombstone").inc()

    def drop(self, services: Iterable[str]) -> None:
        """Services another worker publishes from now on: no tombstone."""
        for service in services:
            self.last.pop(service, None)

    def aborts(self, view: ControlView, aborts: Sequence[Mapping[str, Any]]) -> None:
        """Apply canary aborts here at once; ask the lease holder to record them exactly once."""
        for row in aborts:
            view.apply("releases", [row])
            self._intent("release.abort", f"{row['service']}/{row['changed_ms']}", {"release": row})

    def _intent(self, kind: str, ident: str, body: Mapping[str, Any]) -> None:
        key, value = control.encode_intent(kind, ident, body)
        self.producer.produce(topics.CONTROL, value, key=key)
        metrics.INTENTS.labels(kind).inc()

    def flush(self) -> None:
        self.producer.flush(10)

    def close(self) -> None:
        self.producer.close(10)
