"""The embedded run's Kafka broker with bounded memory: one fixed address, broker generations behind it.

Tansu's memory storage keeps every message until the process ends (retention.ms is ignored,
DeleteRecords is not implemented). So clients connect to a front on a fixed port (svcpulse/broker_front.py),
which forwards each connection to the current generation: a Tansu broker on a private port that advertises
the front's address. When that broker's
resident memory passes `roll_mb`, a roll:
  1. starts the next generation on a new private port;
  2. holds the in-process producers (`hold`: they finish the batch in flight and queue the rest);
  3. stops the front: no client can reach the old generation any more, so what it holds is final;
  4. copies what must survive into the new generation at the same offsets, with the groups'
     committed offsets (svcpulse/generation_copy.py);
  5. starts the front before the new generation, releases the producers, stops the old broker.
Clients see what a broker restart looks like: a dropped connection for a fraction of a second, then
the same topics, offsets and committed offsets; group members re-join. When a step before 5 fails,
the front goes back before the old generation, which still holds everything: nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from svcpulse.generation_copy import KEEP_UNREAD, CopyReport, copy_generation
from svcpulse.kafka_wire import Connection
from svcpulse.services import BrokerFront, Tansu, free_port

log = logging.getLogger("svcpulse.broker")

CHECK_EVERY_S = 2.0
CATCH_UP_S = 30.0  # how long a roll waits for the consumer groups to commit what is there before the switch
_RETRY_AFTER_FAILURE_S = 60.0
_RECONNECT_QUIET_S = 15.0  # kafka-python's connection warnings right after a switch are expected


class _SwitchQuiet(logging.Filter):
    """Drops kafka-python's disconnect/reconnect messages for a few seconds around a switch: every
    client of this process reports the same restart, which the roll's own log line already explains."""

    def __init__(self) -> None:
        super().__init__()
        self.until, self.hidden = 0.0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] == "kafka" and record.levelno < logging.CRITICAL \
                and time.monotonic() < self.until:
            self.hidden += 1
            return False
        return True


@dataclass(frozen=True)
class Roll:
    """One generation switch, as the log line and bench/embedded_soak.py report it."""

    generation: int
    rss_before_mb: float
    copied: CopyReport
    paused_s: float  # how long clients could not reach the broker


def rss_mb(pid: int | None) -> float:
    """Resident memory of a process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return 0.0


class RollingBroker:
    """Start/stop like a Tansu broker; `bootstrap` is the fixed address clients use."""

    def __init__(self, workdir: Path, roll_mb: int, port: int = 0,
                 hold: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext) -> None:
        self.workdir, self.roll_mb, self._hold = workdir, roll_mb, hold
        self.front = BrokerFront(port=port or free_port(), workdir=workdir)
        self.generation = 0
        self.current: Tansu | None = None
        self.rolls: list[Roll] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._quiet = _SwitchQuiet()

    @property
    def bootstrap(self) -> str:
        return self.front.bootstrap

    def set_hold(self, hold: Callable[[], AbstractContextManager[object]]) -> None:
        """What a roll enters while the broker is away (e.g. collectors.sink.sinks_held for this address)."""
        self._hold = hold

    def pids(self) -> dict[str, int]:
        """The processes behind the broker now (for RSS reports)."""
        found = {"broker-proxy": self.front.pid(), "broker": self.current.pid() if self.current else None}
        return {name: pid for name, pid in found.items() if pid}

    def start(self) -> None:
        self.current = self._next_generation()
        self.front.origin = self.current.bootstrap
        self.front.start(die_with_parent=True)
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._quiet)
        if self.roll_mb > 0:
            self._watcher = threading.Thread(target=self._watch, name="broker-roll", daemon=True)
            self._watcher.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=60)
        self.front.stop()
        if self.current is not None:
            self.current.stop()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._quiet)

    def _next_generation(self) -> Tansu:
        self.generation += 1
        broker = Tansu(name=f"tansu-gen{self.generation}", port=free_port(), workdir=self.workdir,
                       advertised_port=self.front.port)
        broker.start(die_with_parent=True)  # even a kill -9 of this process must not leave it behind
        return broker

    def _watch(self) -> None:
        """Roll whenever the broker passes the limit; after a roll that freed little (consumers far
        behind keep their backlog), wait until memory doubles before copying that backlog again."""
        limit = float(self.roll_mb)
        while not self._stopping.wait(CHECK_EVERY_S):
            if rss_mb(self.current.pid() if self.current else None) < limit:
                continue
            try:
                self.roll()
            except Exception:  # the old generation is back in front: keep running, try again later
                log.exception("broker roll failed; generation %d stays", self.generation)
                self._stopping.wait(_RETRY_AFTER_FAILURE_S)
                continue
            limit = max(float(self.roll_mb), 2 * rss_mb(self.current.pid() if self.current else None))

    def roll(self) -> Roll:
        """Switch to a new generation now; see the module docstring for the steps."""
        with self._lock:
            old = self.current
            assert old is not None, "start() first"
            before = rss_mb(old.pid())
            new = self._next_generation()
            with self._hold():
                live = self._wait_for_groups(old)
                frozen = time.monotonic()
                self._quiet.until = frozen + 600  # until the clients are back (set below)
                self.front.stop(kill=True)
                try:
                    with Connection(old.bootstrap) as source, Connection(new.bootstrap) as target:
                        copied = copy_generation(source, target, live=live)
                except BaseException:
                    self._quiet.until = time.monotonic() + _RECONNECT_QUIET_S
                    self._front_to(old)
                    new.stop(kill=True)
                    new.log_file.unlink(missing_ok=True)
                    raise
                self._front_to(new)
                paused = time.monotonic() - frozen
                self._quiet.until = time.monotonic() + _RECONNECT_QUIET_S
            self.current = new
            old.stop(kill=True)
            old.log_file.unlink(missing_ok=True)
        roll = Roll(self.generation, before, copied, paused)
        self.rolls.append(roll)
        self._report(roll)
        return roll

    @staticmethod
    def _wait_for_groups(broker: Tansu) -> frozenset[str]:
        """With the in-process producers held, give the consumer groups up to CATCH_UP_S to commit every
        partition up to where it ends now, so the switch finds little or nothing unconsumed (what is left
        is copied, but a consumer then reads it from a broker it has never seen: keep that rare).
        Returns the groups with members (their backlog is copied whole)."""
        live: list[str] = []
        with Connection(broker.bootstrap) as conn:
            topics = conn.topics()
            marks = {(t, p): conn.end_offset(t, p) for t, n in topics.items() for p in range(n)}
            deadline = time.monotonic() + CATCH_UP_S
            while time.monotonic() < deadline:
                groups = conn.groups()  # only groups with members: one nobody runs will not catch up
                live = [g for g, state in conn.group_states(groups).items() if state != "Empty"] if groups else []
                committed = [conn.committed(group, topics) for group in live]
                if not any(offsets.get(tp, mark) < mark for offsets in committed for tp, mark in marks.items()):
                    return frozenset(live)
                time.sleep(0.2)
        log.warning("consumer groups did not catch up within %.0f s; their backlog is copied", CATCH_UP_S)
        return frozenset(live)

    def _front_to(self, broker: Tansu) -> None:
        self.front.origin = broker.bootstrap
        self.front.start(die_with_parent=True)

    @staticmethod
    def _report(roll: Roll) -> None:
        copied = roll.copied
        log.info("broker generation %d: was %.0f MB; kept %s offsets, dropped %s, %d groups' offsets; "
                 "clients paused %.2f s (their reconnect messages are hidden for %.0f s)",
                 roll.generation, roll.rss_before_mb, f"{copied.kept:,}", f"{copied.dropped:,}", copied.groups,
                 roll.paused_s, _RECONNECT_QUIET_S)
        for (topic, partition), cut in copied.cut.items():
            log.warning("%s[%d]: %s offsets not yet consumed were dropped to keep the broker bounded (the newest "
                        "%s stay)", topic, partition, f"{cut:,}", f"{KEEP_UNREAD:,}")
