"""`svcpulse weigh`: a streaming weights worker (docs/weights.md, "Topology").

Each worker is a member of one consumer group on svcpulse.rpc. The topic is keyed by callee, so the
group shards services by partition: a worker owns the services whose home partition it holds.
- Window: every event is counted in memory (weights/window.py); no ClickHouse query in the steady
  state. Every tick the pure cycle (weights/cycle.py) steps the engine for the owned services.
- Publish: a service's feed goes to svcpulse.weights (key = service) when its revision changes and
  every `weights_heartbeat_cycles` cycles; weight_history is written in the background.
- Take-over: partitions assigned to it are paused, their services' engine memory and membership are
  read back from svcpulse.weights, the partitions are replayed from `window_s` + slack ago (found by
  time), and their feeds are published again only once that replay has caught up.
- Standby (weigh/standby.py): it also counts one peer's partitions, so when that peer goes silent it
  publishes them at the next tick, and takes them over from the group without a replay.
- Control: the small tables come from ClickHouse once and then from svcpulse.control (weigh/follow.py);
  a change there starts a tick at once. Canary aborts are applied here at once and sent as intents
  for the lease holder to record exactly once.
- Trust: telemetry creates no routable endpoint: each tick admits registered instances and those a
  discovery policy admits, within the cardinality caps (weights/cycle.py); the caps' ledger lives
  here, per worker (its shard of the services), and weigh/gate.py keeps a flood out of the windows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import replace

from core.caps_report import CapReporter
from core.kafka import KafkaClientError
from core.settings import Settings
from pipeline import events, fastdecode, topics
from pipeline.store import Store
from pipeline.transform import judge
from weigh import metrics
from weigh.counted import CountedStore
from weigh.follow import ControlFollower
from weigh.gate import Gate
from weigh.history import HistoryWriter
from weigh.kafka import Consumer, Message, ensure_control_topics, member, producer
from weigh.ownership import Ownership
from weigh.publisher import Publisher
from weigh.standby import Standby
from weigh.tcp_follow import TcpFollower
from weights.admission import Authority
from weights.caps import Caps, Ledger, Tracked
from weights.cycle import Bounds, run_cycle, wanted_ports
from weights.model import DEFAULT_CONFIG, EngineConfig, EngineState
from weights.tcp_window import TcpWindows
from weights.window import Windows

log = logging.getLogger("svcpulse.weigh")
RETRY_S = 2.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(self, settings: Settings, store: Store | None, config: EngineConfig = DEFAULT_CONFIG) -> None:
        self.settings = settings
        self.store = CountedStore(store) if store is not None else None
        self.config = replace(config, window_s=settings.weights_window_s)
        self.name = worker_name()
        self.windows = self._windows()
        self.tcp = TcpWindows(settings.weights_window_s)
        self.states: dict[str, EngineState] = {}
        caps = Caps(settings.cap_services_per_hour, settings.cap_instances_per_service,
                    settings.cap_interfaces_per_service)
        self.bounds = Bounds(caps, settings.forget_instance_s * 1000)
        self.gate = Gate(caps, self.bounds.forget_ms)
        self.caps_report = CapReporter(caps)
        self.stop_event = threading.Event()
        # Set while this membership publishes every partition it owns (joined, taken over, replayed):
        # what an orchestrator's readiness check and the tests wait for instead of guessing a join time.
        self.publishing = threading.Event()
        self.events = self.ticks = 0  # counted since start

    def _windows(self) -> Windows:
        # One interface past the cap: enough for the cap to see it refuse, no memory beyond that.
        return Windows(self.settings.weights_window_s, self.settings.forget_instance_s,
                       self.settings.cap_interfaces_per_service + 1)

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        """Until stop(): a broker outage is not a crash; the worker joins again and takes over anew."""
        history = HistoryWriter(self.store) if self.store is not None else None
        try:
            while not self.stop_event.is_set():
                try:
                    self._session(history)
                except KafkaClientError as err:
                    log.warning("weigh worker %s: %s; joining again in %.0f s", self.name, err, RETRY_S)
                    self.stop_event.wait(RETRY_S)
        finally:
            if history is not None:
                history.close()

    def _session(self, history: HistoryWriter | None) -> None:
        """One membership of the group: connect, follow, publish; everything closed on the way out."""
        client, bootstrap = self.settings.kafka_client, self.settings.kafka_bootstrap
        ensure_control_topics(bootstrap, self.settings.partitions)
        # A new membership rebuilds what it is assigned (feeds read back, window replayed): start empty,
        # or a replay would count the events still held from the last session twice.
        self.publishing.clear()
        self.windows = self._windows()
        self.tcp = TcpWindows(self.settings.weights_window_s)
        self.states = {}
        self.bounds, self.gate = replace(self.bounds, ledger=Ledger()), Gate(self.bounds.caps, self.bounds.forget_ms)
        with contextlib.ExitStack() as opened:
            consumer = member(client, bootstrap, self.settings.weigh_group_id, f"svcpulse-weigh-{self.name}")
            opened.callback(consumer.close)  # leaves the group: the others take the partitions over at once
            follower = ControlFollower(client, bootstrap, f"svcpulse-weigh-control-{self.name}")
            opened.callback(follower.close)
            if self.store is not None:
                follower.read_snapshot_in_background(self.store)
            publisher = Publisher(producer(client, bootstrap), self.name, self.settings)
            opened.callback(publisher.close)
            standby = Standby(self.settings, self.name) if self.settings.weigh_standby else None
            if standby is not None:
                opened.callback(standby.close)
            owner = Ownership(consumer, self.windows, self.states, self.settings, standby)
            consumer.subscribe([topics.RPC], owner.assigned, owner.revoked)
            connections = TcpFollower(client, bootstrap, self.tcp, f"svcpulse-weigh-tcp-{self.name}")
            opened.callback(connections.close)
            log.info("weigh worker %s: group %s on %s; feeds to %s", self.name, self.settings.weigh_group_id,
                     topics.RPC, topics.WEIGHTS)
            self._loop(consumer, follower, owner, publisher, history, connections)

    def _loop(self, consumer: Consumer, follower: ControlFollower, owner: Ownership, publisher: Publisher,
              history: HistoryWriter | None, connections: TcpFollower) -> None:
        tick_s, cycle_s = self.settings.weigh_tick_s, self.settings.weights_interval_s
        next_tick = next_history = time.monotonic()
        while not self.stop_event.is_set():
            records = consumer.poll(max(0.0, min(0.1, next_tick - time.monotonic())))
            now_ms = int(time.time() * 1000)
            owner.take_over(publisher)
            self._count(records, owner, now_ms)
            adopted = owner.adopt(publisher)  # a silent peer's services are published at once
            if owner.standby is not None:
                self._count(owner.standby.poll(), owner, now_ms)
            changed = follower.poll(0) or adopted
            if self.tcp.ports:  # no service judged by connections: svcpulse.tcp is not read at all
                connections.poll(now_ms)
            if time.monotonic() < next_tick and not changed:
                continue
            next_tick = time.monotonic() + tick_s
            feeds = self._tick(now_ms, follower, owner, publisher)
            if history is not None and time.monotonic() >= next_history:
                next_history = time.monotonic() + cycle_s
                history.submit(feeds)

    def _count(self, records: list[Message], owner: Ownership, now_ms: int) -> None:
        n = 0
        for message in records:
            if message.partition in owner.skip:
                continue
            raw = message.value or b""
            try:  # in C when msgspec vouches for the message (most of the worker's CPU), else the one judge
                event = fastdecode.contract_event("rpc", raw) or judge("rpc", raw, None)
            except events.Rejection:
                metrics.REJECTED.inc()  # the loader dead-letters it; here it is simply not counted
                continue
            if owner.counts(message, event["callee"]) and self.gate.passes(
                    self.windows, event["callee"], event["instance"], event["side"], event["ts_ms"]):
                self.windows.add(event, now_ms)
                n += 1
        metrics.EVENTS.inc(n)
        self.events += n
        owner.note_progress()

    def _track(self, tracked: Tracked, made: Authority, services: set[str], now_ms: int, armed: bool) -> None:
        """Keep the caps' ledger; drop from the windows the services the caps refused (they stay refused).

        Not before the control tables are known (`armed`): a registration or policy not read yet must
        not cost its service its window or a place in the ledger."""
        if not armed:
            return
        self.bounds = replace(self.bounds, ledger=tracked.ledger)
        refused = {s for s in services if s not in tracked.ledger.services and s not in made.operator_made}
        self.windows.drop(refused)
        self.gate.refuse(refused, now_ms)
        self.gate.arm(made, tracked.ledger, now_ms)
        self.caps_report.report(tracked, len(self.gate.refused))

    def _tick(self, now_ms: int, follower: ControlFollower, owner: Ownership,
              publisher: Publisher) -> list[dict]:
        started = time.perf_counter()
        self.windows.expire(now_ms)
        self.tcp.want(wanted_ports(follower.view))
        self.tcp.expire(now_ms)
        made = follower.view.authority()
        services = {s for s in self.windows.services.keys() | made.operator_made if owner.ready_for(s)}
        observed = self.windows.rows(now_ms, services)
        result = run_cycle(observed, follower.view, self.states, now_ms, self.config,
                           self.settings.canary_min_requests, owns=owner.ready_for, bounds=self.bounds,
                           interfaces=self.windows.served(services), tcp=self.tcp.windows(now_ms))
        self._track(result.tracked, made, services, now_ms, armed=follower.snapshot_loaded or self.store is None)
        for service in services:
            self.states.pop(service, None)
        self.states.update(result.states)
        publisher.aborts(follower.view, result.aborts)
        stale = owner.inputs_stale()
        for service, feed in result.feeds.items():
            publisher.feed(service, feed, result.states[service], self.windows.seen(service),
                           stale.get(owner.home(service), ""), now_ms)
        publisher.forget(owner.ready_for, set(result.feeds))
        publisher.flush()
        metrics.TICK_SECONDS.observe(time.perf_counter() - started)
        metrics.OWNED.set(len(result.feeds))
        self.ticks += 1
        if owner.owned and not owner.replaying and (follower.snapshot_loaded or self.store is None):
            self.publishing.set()
        return list(result.feeds.values())
