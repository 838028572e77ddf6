"""Which services a weigh worker owns, and taking partitions over without forgetting or flapping.

The group assigns svcpulse.rpc partitions; a service belongs to the worker holding its home partition
(murmur2 of the name, as Kafka's default partitioner keys it). Rebalance callbacks only note what
changed; `take_over` runs right after the poll that delivered them:
- lost partitions: their services' windows, engine memory and publishing memory are dropped;
- new partitions: the newest feed message of each of their services is read back from
  svcpulse.weights (engine memory + who called in within forget_s), and the partition is replayed
  from `window_s` + REPLAY_SLACK_S ago, found by record time. Its services are published again
  once the replay reached the high watermark seen at the take-over (`ready_for`);
- new partitions this worker kept warm as a standby (weigh/standby.py) continue from the standby's
  position, with no replay, and the engine memory the standby followed;
- `adopt` (every tick) publishes the services of warm partitions whose publisher died, until another
  worker publishes them or the group assigns them here.
"""

from __future__ import annotations

import logging
import time

from core.settings import Settings
from pipeline import topics
from weigh import metrics
from weigh.kafka import TP, Consumer, Message, home_partition, offsets_at_time
from weigh.publisher import Publisher
from weigh.restore import newest_feeds
from weigh.standby import Standby
from weights.message import FeedMessage
from weights.model import EngineState
from weights.window import Windows

log = logging.getLogger("svcpulse.weigh")
HOMES_CACHED = 100_000  # service -> home partition, cached (murmur2 per event otherwise)
REPLAY_SLACK_S = 5  # events reach Kafka a little after their ts_ms (producer batching, spool replays)


class Ownership:
    def __init__(self, consumer: Consumer, windows: Windows, states: dict[str, EngineState],
                 settings: Settings, standby: Standby | None = None) -> None:
        self.consumer, self.windows, self.states = consumer, windows, states
        self.settings, self.standby = settings, standby
        self.adopted: dict[int, str] = {}  # partition -> the dead worker whose services this one publishes
        self.partitions = 0  # of svcpulse.rpc, known once assigned
        self.owned: set[int] = set()
        self.replaying: dict[int, int] = {}  # partition -> the offset it must reach before publishing
        self.skip: set[int] = set()  # partitions seeked back: this poll's records of them are re-read
        self._assignment: set[int] | None = None
        self._homes: dict[str, int] = {}
        self._moved: dict[int, tuple[int, float]] = {}  # partition -> (position, monotonic time it moved)

    def assigned(self, tps: set[TP]) -> None:
        self._assignment = {p for _, p in tps}

    def revoked(self, tps: set[TP]) -> None:
        pass  # the assignment that follows says what is really lost (eager rebalances revoke everything)

    def home(self, service: str) -> int:
        found = self._homes.get(service)
        if found is None:
            if len(self._homes) >= HOMES_CACHED:  # a flood of one-off names must not grow the cache for ever
                self._homes.clear()
            found = self._homes[service] = home_partition(service, self.partitions or 1)
        return found

    def take_over(self, publisher: Publisher) -> None:
        self.skip = set()
        if self._assignment is None:
            return
        assignment, self._assignment = self._assignment, None
        if not self.partitions:
            self.partitions = len(self.consumer.partitions_for(topics.RPC))
            self._homes.clear()
        lost, new = self.owned - assignment, assignment - self.owned
        self.owned = assignment
        gone = {s for s in self.windows.services.keys() | self.states.keys() if self.home(s) in lost}
        self.windows.drop(gone)
        publisher.drop(gone)
        for service in gone:
            self.states.pop(service, None)
        for p in lost:
            self.replaying.pop(p, None)
        warm = self.standby.hand_over(new) if self.standby is not None else {}
        for p, (position, unreached) in warm.items():
            self.consumer.seek((topics.RPC, p), position)
            if unreached is not None:
                self.replaying[p] = unreached
        self.skip = set(warm)
        self._restore({p: None for p in warm}, self.standby.newest if self.standby is not None else {})
        if new - warm.keys():
            self._rebuild(new - warm.keys())
        log.info("weigh: partitions of %s now %s (lost %s, new %s, of which warm from the standby %s)", topics.RPC,
                 sorted(assignment), sorted(lost), sorted(new), sorted(warm))

    def _rebuild(self, new: set[int]) -> None:
        started = time.monotonic()
        now_ms = int(time.time() * 1000)
        restored = newest_feeds(self.settings.kafka_client, self.settings.kafka_bootstrap,
                                now_ms - self.settings.forget_instance_s * 1000, wanted=lambda s: self.home(s) in new)
        self._restore(dict.fromkeys(new), restored)
        since_ms = now_ms - (self.settings.weights_window_s + REPLAY_SLACK_S) * 1000
        for tp, offset in offsets_at_time(self.consumer, {(topics.RPC, p): since_ms for p in new}).items():
            self.consumer.seek(tp, offset)
            self.replaying[tp[1]] = self.consumer.watermarks(tp)[1]
        self.skip |= new
        took_s = time.monotonic() - started
        metrics.TAKEOVER_SECONDS.observe(took_s)
        log.info("weigh: took over partitions %s in %.1f s: %d services restored from %s, replaying from %d s ago",
                 sorted(new), took_s, len(restored), topics.WEIGHTS, self.settings.weights_window_s + REPLAY_SLACK_S)

    def _restore(self, partitions: dict[int, None], feeds: dict[str, FeedMessage]) -> None:
        """Engine memory and membership of these partitions' services, from their newest feeds (a service
        this worker already steps keeps its own)."""
        for service, found in feeds.items():
            if self.home(service) in partitions and service not in self.states:
                self.states[service] = found.state
                self.windows.seed(service, found.seen)

    def adopt(self, publisher: Publisher) -> bool:
        """Follow the peers (weigh/standby.py): read what the standby should, publish what it adopts.
        True when it began to publish a silent peer's partitions (tick now: their feeds are due)."""
        if self.standby is None or not self.partitions:
            return False
        self.standby.follow()
        dropped = self.standby.follow_peers(self.owned, REPLAY_SLACK_S)
        adopted = self.standby.peers.adopted(self.standby.warm(), time.monotonic())
        began = {p: None for p in adopted.keys() - self.adopted.keys()}
        ended = (self.adopted.keys() - adopted.keys() - self.owned) | dropped
        self.adopted = adopted
        self._restore(began, self.standby.newest)
        forgotten = {s for s in self.windows.services.keys() | self.states.keys() if self.home(s) in ended}
        self.windows.drop({s for s in forgotten if self.home(s) in dropped})
        publisher.drop(forgotten)
        for service in forgotten:
            self.states.pop(service, None)
        if began or ended - dropped:
            log.warning("weigh: publishing partitions %s of silent workers %s (adopted, until the group moves "
                        "them); no longer %s", sorted(adopted), sorted(set(adopted.values())), sorted(ended - dropped))
        metrics.ADOPTED.set(len(adopted))
        return bool(began)

    def counts(self, message: Message, callee: str) -> bool:
        """Whether an event read from this partition (owned, or kept warm as a standby) goes into the windows."""
        if message.partition in self.skip:
            return False
        home = self.home(callee)
        if home != message.partition:
            metrics.MISROUTED.inc()
        return home in self.owned or (self.standby is not None and home in self.standby.partitions)

    def note_progress(self) -> None:
        for p, target in list(self.replaying.items()):
            if p not in self.skip and (self.consumer.position((topics.RPC, p)) or 0) >= target:
                del self.replaying[p]

    def ready_for(self, service: str) -> bool:
        home = self.home(service)
        return (home in self.owned and home not in self.replaying) or home in self.adopted

    def inputs_stale(self) -> dict[int, str]:
        """partition -> why its services' inputs stopped advancing (events waiting, none read for a while).
        Called once per cycle: the high watermark is a broker request."""
        limit_s = self.settings.weights_stale_cycles * self.settings.weights_interval_s
        reasons = {}
        for p in self.owned:
            tp = (topics.RPC, p)
            position = self.consumer.position(tp) or 0
            moved = self._moved.get(p)
            if moved is None or moved[0] != position:
                self._moved[p] = moved = (position, time.monotonic())
            idle_s = time.monotonic() - moved[1]
            lag = self.consumer.watermarks(tp)[1] - position if idle_s > limit_s else 0
            why = stalled(f"{topics.RPC}[{p}]", lag, idle_s, limit_s)
            if why:
                reasons[p] = why
        return reasons


def stalled(partition: str, lag: int | None, idle_s: float, limit_s: float) -> str:
    """Why a partition's feeds are stale: events wait, but none was read for longer than limit_s.

    A lag below zero waits for nothing: Tansu answers a high watermark of its last batch's base + 1
    (docs/kafka.md), below the position of a consumer that read that whole batch."""
    if lag is None or lag <= 0 or idle_s <= limit_s:
        return ""
    return f"inputs stopped advancing: {lag} events waiting on {partition}, none read for {idle_s:.0f} s"
