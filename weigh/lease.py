"""A lease for work that must happen exactly once, held through Kafka's group coordinator.

Every candidate joins consumer group `lease_group_id` on svcpulse.leader, a topic with ONE partition:
the coordinator assigns that partition to exactly one member, which holds the lease. When the
holder dies (kill -9, a lost host), the coordinator notices after the session timeout (6 s) and
assigns the partition to another member: failover in ~10 s. The holder also drops the lease itself
when its own polling stalls for half a session (so a paused zombie stops acting before the
coordinator moves the lease), and `term` counts acquisitions, so duties can restore their state
when a new term begins (docs/deploy.md, "Exactly once").
"""

from __future__ import annotations

import logging
import threading
import time

from core.kafka import ensure_topics
from pipeline import topics
from weigh.kafka import TP, member

log = logging.getLogger("svcpulse.lease")
SESSION_S = 6.0  # the consumer's session timeout (weigh/kafka.py GROUP_TUNING)
POLL_S = 0.5


class Lease:
    def __init__(self, client: str, bootstrap: str, group_id: str, name: str) -> None:
        self.client, self.bootstrap, self.group_id, self.name = client, bootstrap, group_id, name
        self.term = 0
        self.last_error = ""
        self._assigned = False
        self._polled_at = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def start(self) -> Lease:
        self._thread.start()
        return self

    def held(self) -> bool:
        return self._assigned and time.monotonic() - self._polled_at < SESSION_S / 2

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)  # a thread still connecting to a dead broker is a daemon: left to exit

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._member()
            except Exception as err:  # a broker outage must not end the candidacy
                self._assigned, self.last_error = False, str(err)
                log.warning("lease %s: %s; trying again", self.group_id, err)
                self._stopping.wait(2.0)

    def _member(self) -> None:
        ensure_topics(self.bootstrap, [topics.LEADER], 1, timeout_s=5)  # ONE partition: one holder
        consumer = member(self.client, self.bootstrap, self.group_id, f"svcpulse-lease-{self.name}")
        try:
            consumer.subscribe([topics.LEADER], self._on_assign, self._on_revoke)
            while not self._stopping.is_set():
                consumer.poll(POLL_S)
                self._polled_at = time.monotonic()
        finally:
            self._assigned = False
            consumer.close()  # leaving the group hands the lease over at once

    def _on_assign(self, tps: set[TP]) -> None:
        if tps and not self._assigned:
            self.term += 1
            log.info("lease %s acquired by %s (term %d)", self.group_id, self.name, self.term)
        self._assigned = bool(tps)

    def _on_revoke(self, tps: set[TP]) -> None:
        if self._assigned:
            log.info("lease %s released by %s", self.group_id, self.name)
        self._assigned = False
