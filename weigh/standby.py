"""Warm standby: a killed worker's services continue within the session timeout + one cycle.

The group alone moves a dead member's partitions only after the broker's session timeout, the
survivors' rejoin (Tansu holds a join for half a session) and the new owner's replay of the window:
12 s here with a 6 s session, and the replay grows with traffic. So, like Kafka Streams' standby
replicas, each worker keeps a warm copy of the partitions of one peer, its *buddy* (the next live
worker in name order, wrapping), read without a group: twice the counting, whatever the number of
workers. Liveness comes from svcpulse.weights, where every worker publishes each of its services at
least every heartbeat: a worker silent for `silence_s` (the group's session timeout) is dead, and the
worker that stood by for it publishes its partitions' services at the next tick ("adopts" them), until
another worker publishes them or the group assigns them to the adopter, which then takes them over
without a replay. Two workers that briefly disagree about a death publish feeds computed from the same
events; the newest message per service wins at the readers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from core.kafka.tuning import ConsumerTuning
from core.settings import Settings
from pipeline import topics
from weigh.kafka import Message, home_partition, offsets_at_time, reader
from weigh.restore import apply_message
from weights.message import FeedMessage

log = logging.getLogger("svcpulse.weigh")


def silence_s(settings: Settings) -> float:
    """How long a worker may publish nothing before it counts as dead: the group's session timeout, and
    never less than one heartbeat plus one cycle (a live worker publishes every feed that often)."""
    heartbeat_s = settings.weights_heartbeat_cycles * settings.weights_interval_s
    return max(ConsumerTuning().session_timeout_ms / 1000, heartbeat_s + settings.weights_interval_s)


@dataclass
class Peers:
    """Which other worker published each partition's feeds last, and which workers are alive."""

    me: str
    silence_s: float
    last_seen: dict[str, float] = field(default_factory=dict)  # worker -> monotonic time of its newest feed
    owners: dict[int, str] = field(default_factory=dict)  # partition -> the other worker that published it last

    def observe(self, worker: str, partition: int, now: float) -> None:
        # Our own feeds say nothing we do not know, and counting our adoptions as ownership would end them.
        if worker and worker != self.me:
            self.last_seen[worker] = now
            self.owners[partition] = worker

    def alive(self, worker: str, now: float) -> bool:
        return now - self.last_seen.get(worker, -1e18) <= self.silence_s

    def _ring(self, now: float, *extra: str) -> list[str]:
        return sorted({w for w in self.last_seen if self.alive(w, now)} | {self.me, *extra})

    def buddy(self, now: float) -> str | None:
        """The worker this one stands by for: the next live one after it in name order."""
        ring = self._ring(now)
        return ring[(ring.index(self.me) + 1) % len(ring)] if len(ring) > 1 else None

    def adopter(self, dead: str, now: float) -> str:
        """Who stands in for a dead worker: the one whose buddy it was (its predecessor among the live)."""
        ring = self._ring(now, dead)
        return ring[ring.index(dead) - 1]

    def standby(self, owned: set[int], now: float) -> set[int]:
        """Partitions to keep warm: the buddy's, and those of dead workers this one stands in for."""
        buddy = self.buddy(now)
        return {p for p, w in self.owners.items() if p not in owned
                and (w == buddy or (not self.alive(w, now) and self.adopter(w, now) == self.me))}

    def adopted(self, warm: set[int], now: float) -> dict[int, str]:
        """partition -> its dead publisher, for the warm partitions whose publisher died."""
        return {p: self.owners[p] for p in warm if p in self.owners and not self.alive(self.owners[p], now)}


class Standby:
    """The standby reader of svcpulse.rpc (no group) and the follower of svcpulse.weights behind Peers."""

    def __init__(self, settings: Settings, name: str) -> None:
        client, bootstrap = settings.kafka_client, settings.kafka_bootstrap
        self.peers = Peers(name, silence_s(settings))
        self.replay_s = settings.weights_window_s
        self.newest: dict[str, FeedMessage] = {}  # service -> the newest feed another worker published
        self.partitions: set[int] = set()  # of svcpulse.rpc, read here
        self.warming: dict[int, int] = {}  # partition -> the offset it must reach before it is warm
        self.rpc = reader(client, bootstrap, f"svcpulse-weigh-standby-{name}")
        self.rpc_partitions = len(self.rpc.partitions_for(topics.RPC))
        self.feeds = reader(client, bootstrap, f"svcpulse-weigh-peers-{name}")
        weights = [(topics.WEIGHTS, p) for p in sorted(self.feeds.partitions_for(topics.WEIGHTS))]
        self.feeds.assign({tp: self.feeds.watermarks(tp)[1] for tp in weights})  # the living publish anew

    def follow(self) -> None:
        """Read what the others published since the last call."""
        now = time.monotonic()
        for message in self.feeds.poll(0):
            found = apply_message(message, self.newest) if message.key else None
            if found is not None and found.feed is not None:
                self.peers.observe(found.worker, self.home(found.service), now)

    def home(self, service: str) -> int:
        return home_partition(service, self.rpc_partitions)

    def poll(self) -> list[Message]:
        records = self.rpc.poll(0) if self.partitions else []
        for p, target in list(self.warming.items()):
            if (self.rpc.position((topics.RPC, p)) or 0) >= target:
                del self.warming[p]
        return records

    def warm(self) -> set[int]:
        return self.partitions - self.warming.keys()

    def follow_peers(self, owned: set[int], slack_s: int) -> set[int]:
        """Read the partitions Peers says to stand by for; returns those no longer read here."""
        wanted = self.peers.standby(owned, time.monotonic())
        if wanted == self.partitions:
            return set()
        dropped, new = self.partitions - wanted, wanted - self.partitions
        self._read({p: self.rpc.position((topics.RPC, p)) for p in self.partitions & wanted}, new, slack_s)
        log.info("weigh: standing by for partitions %s of %s (buddy %s; new %s, dropped %s)", sorted(wanted),
                 topics.RPC, self.peers.buddy(time.monotonic()), sorted(new), sorted(dropped))
        return dropped

    def _read(self, kept: dict[int, int | None], new: set[int], slack_s: int) -> None:
        """Read `kept` on from their positions and `new` from window + slack ago (found by time)."""
        new = new | {p for p, offset in kept.items() if offset is None}  # no position yet: start it anew
        tps = {(topics.RPC, p): offset for p, offset in kept.items() if p not in new} | {
            (topics.RPC, p): None for p in new}
        self.rpc.assign(tps)
        since_ms = int(time.time() * 1000) - (self.replay_s + slack_s) * 1000
        for tp, offset in offsets_at_time(self.rpc, {(topics.RPC, p): since_ms for p in new}).items():
            self.rpc.seek(tp, offset)
            self.warming[tp[1]] = self.rpc.watermarks(tp)[1]
        self.partitions = set(kept) | new
        for p in [p for p in self.warming if p not in self.partitions]:
            del self.warming[p]

    def hand_over(self, partitions: set[int]) -> dict[int, tuple[int, int | None]]:
        """Stop reading partitions the group assigned to this worker: partition -> (position, the offset
        still to reach when it was not warm yet)."""
        positions = {p: self.rpc.position((topics.RPC, p)) for p in self.partitions}
        moved = {p: (at, self.warming.get(p)) for p, at in positions.items() if p in partitions and at is not None}
        if partitions & self.partitions:  # one without a position yet is replayed by the new owner
            self._read({p: at for p, at in positions.items() if p not in partitions}, set(), 0)
        return moved

    def close(self) -> None:
        self.rpc.close()
        self.feeds.close()
