"""The API side of the weight feed: serve what the weigh workers publish; compute nothing.

A reader thread follows svcpulse.weights on every partition, without a group, from `forget_s` ago,
and keeps the newest feed per service in memory; the bodies are serialised once per message batch
and swapped in on the event loop, where long-polls waiting for a new revision are woken at once.
The same thread follows svcpulse.control (weigh/follow.py): held-role changes reach the Directory
within one poll, and intents wait there for the lease holder (api/leader.py).

Freshness: a feed older than `weights_stale_cycles` cycles (its worker died, or lost its partition
and no one took it yet) or whose worker says its inputs stopped advancing is served marked `stale`
with the reason; it is never emptied. The replica is ready once it has read every partition up to
the high watermark it saw at start (docs/weights.md, "Topology").
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from api.control import ControlPublisher
from core.settings import Settings
from pipeline import topics
from pipeline.store import Store
from weigh.follow import ControlFollower
from weigh.kafka import Message, ensure_control_topics, reader
from weigh.restore import apply_message, caught_up, seek_all
from weights.message import FeedMessage

log = logging.getLogger("svcpulse.weights")
RETRY_S = 2.0


class WeightService:
    def __init__(self, settings: Settings, store: Store, publisher: ControlPublisher,
                 on_roles: Callable[[dict[str, str]], None] = lambda _: None) -> None:
        self.settings, self.store, self.publisher, self.on_roles = settings, store, publisher, on_roles
        self.messages: dict[str, FeedMessage] = {}
        self.feeds: dict[str, dict[str, Any]] = {}
        self.received_ms: dict[str, int] = {}  # when this replica last got a message per service
        self.bodies: dict[str, bytes] = {}
        self.index: dict[str, Any] = {"revision": "", "services": []}
        self.ready = False
        self.last_error = "the feed reader has not started"
        self.follower: ControlFollower | None = None
        self.intents: dict[str, dict[str, Any]] = {}  # key -> intent, taken by the lease holder (api/leader.py)
        self._intents_lock = threading.Lock()
        self._changed = asyncio.Event()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._read, name="feed-reader", daemon=True)
        self._thread.start()
        while not self._stopping.is_set():
            await asyncio.sleep(0.2)

    def kick(self) -> None:
        """Deliver the control rows this request wrote to svcpulse.control now; raises ControlUnavailable."""
        self.publisher.flush()

    def stop(self) -> None:
        self._stopping.set()

    def take_intents(self) -> dict[str, dict[str, Any]]:
        with self._intents_lock:
            taken, self.intents = self.intents, {}
        return taken

    def _read(self) -> None:
        """Follow the two topics until stopped; reconnect after a broker outage."""
        while not self._stopping.is_set():
            try:
                self._follow()
            except Exception as err:  # a broker outage must not end the reader
                self.last_error = f"Kafka {self.settings.kafka_bootstrap}: {err}"
                log.warning("weight feed reader: %s; retrying in %.0f s", self.last_error, RETRY_S)
                self._stopping.wait(RETRY_S)

    def _follow(self) -> None:
        client, bootstrap = self.settings.kafka_client, self.settings.kafka_bootstrap
        ensure_control_topics(bootstrap, self.settings.partitions, timeout_s=5)
        self.last_error = "catching up"
        consumer = reader(client, bootstrap, "svcpulse-api-feed")
        follower = ControlFollower(client, bootstrap, "svcpulse-api-control", collect_intents=True)
        follower.read_snapshot_in_background(self.store)  # held roles written before the topic existed
        try:
            since_ms = int(time.time() * 1000) - self.settings.forget_instance_s * 1000
            targets = seek_all(consumer, topics.WEIGHTS, since_ms)
            while not self._stopping.is_set():
                self._deliver(consumer.poll(0.1))
                if not self.ready and caught_up(consumer, targets):
                    self.ready, self.last_error = True, ""
                    self._call(self._rebuild)
                self._roles(follower, follower.poll(0))
                with self._intents_lock:
                    self.intents.update(follower.take_intents())
        finally:
            consumer.close()
            follower.close()

    def _roles(self, follower: ControlFollower, changed: bool) -> None:
        if changed:
            held = follower.view.held_roles()
            self._call(lambda: self.on_roles(held))

    def _deliver(self, records: Sequence[Message]) -> None:
        if not records:
            return
        batch: dict[str, FeedMessage] = {}
        removed = set()
        for message in records:
            apply_message(message, batch)  # a tombstone also takes the service out of the batch
            if message.value is None and message.key:
                removed.add(message.key.decode("utf-8", "replace"))
        self._call(lambda: self._apply(batch, removed))

    def _call(self, fn: Callable[[], None]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn)

    def _apply(self, batch: dict[str, FeedMessage], removed: set[str]) -> None:
        """On the event loop: swap in the newest messages, then wake long-polls."""
        now_ms = int(time.time() * 1000)
        for service in removed:
            for held in (self.messages, self.feeds, self.bodies, self.received_ms):
                held.pop(service, None)
        for service, found in batch.items():
            self.messages[service] = found
            self.feeds[service] = found.feed  # type: ignore[assignment]
            self.bodies[service] = orjson.dumps(found.feed)
            self.received_ms[service] = now_ms
        if self.ready:
            self._rebuild()

    def _rebuild(self) -> None:
        revisions = ",".join(f"{name}={feed['revision']}" for name, feed in sorted(self.feeds.items()))
        self.index = {"revision": hashlib.sha256(revisions.encode()).hexdigest()[:16],
                      "services": [self.feeds[name] for name in sorted(self.feeds)]}
        # Swap the event before setting the old one: waiters woken now re-check the new revision,
        # and later waiters park on a fresh, unset event.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def revision(self, service: str | None) -> str | None:
        if service is None:
            return self.index["revision"] if self.ready else None
        feed = self.feeds.get(service)
        return feed["revision"] if feed else None

    async def wait_change(self, service: str | None, revision: str, timeout_s: float) -> None:
        """Return when the revision differs from `revision`, or after timeout_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.revision(service) == revision and not self._stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    def stale_reason(self, service: str) -> str:
        """Why this service's feed is not current, or "" when it is."""
        found = self.messages[service]
        if found.inputs_stale:
            return found.inputs_stale
        cycle_s = self.settings.weights_interval_s
        age_s = (time.time() * 1000 - max(found.feed["generated_at_ms"], 0)) / 1000  # type: ignore[index]
        if age_s > self.settings.weights_stale_cycles * cycle_s:
            return (f"no feed from a weigh worker for {age_s:.0f} s (> {self.settings.weights_stale_cycles} "
                    f"cycles of {cycle_s:g} s; last from {found.worker or 'unknown'}): weights kept as they were")
        return ""

    def body(self, service: str | None) -> bytes:
        """The serialised feed; a stale one marked with the reason (the index marks each stale service)."""
        if service is not None:
            why = self.stale_reason(service)
            return orjson.dumps({**self.feeds[service], "stale": True, "stale_reason": why}) if why \
                else self.bodies[service]
        stale = {name: why for name in self.feeds if (why := self.stale_reason(name))}
        if not stale:
            return orjson.dumps(self.index)
        services = [{**f, "stale": True, "stale_reason": stale[f["service"]]} if f["service"] in stale else f
                    for f in self.index["services"]]
        return orjson.dumps({**self.index, "services": services, "stale": True,
                             "stale_reason": f"{len(stale)} of {len(self.feeds)} services stale"})
