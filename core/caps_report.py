"""Metrics and log lines for the cardinality caps (weights/caps.py), for whichever loop applies them.

Each cap has a gauge of what it refuses now and a warning in the log, at most once a minute per cap
while it keeps refusing, naming the cap, how many were refused and a few of the names. Instances
and interfaces are counted every cycle; services nobody made are counted by a scan the loop runs
at most once a minute (`services_refused`), the gauge keeps the last count in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge, Histogram

from weights.caps import CAP_NAMES, Caps, Tracked

log = logging.getLogger("svcpulse.caps")

REFUSED = Gauge("svcpulse_cap_refused", "Entities a cardinality cap refuses now (their events are stored; no "
                "entity is created): services over the hourly cap seen within forget_s, instances and "
                "interfaces refused in the last cycle", ["cap"])
TRACKED = Gauge("svcpulse_entities_tracked", "Entities telemetry created that the control loop tracks now",
                ["kind"])
CYCLE_SECONDS = Histogram("svcpulse_weights_cycle_seconds", "Duration of one weight cycle (read, admit, compute, "
                          "record)", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
_WHAT = {"services_per_hour": "new services in the last hour", "instances_per_service": "instances per service",
         "interfaces_per_service": "interfaces per service"}


class CapReporter:
    """Turns each cycle's `Tracked` into metrics, and into a log line per cap at most every `log_every_s`."""

    def __init__(self, caps: Caps, log_every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.caps, self.log_every_s, self.clock = caps, log_every_s, clock
        self._logged: dict[str, float] = {}

    def report(self, tracked: Tracked, services_refused: int | None = None) -> None:
        for kind, size in tracked.ledger.sizes().items():
            TRACKED.labels(kind).set(size)
        counts = dict(tracked.refused.counts)
        if services_refused is not None:
            counts["services_per_hour"] = max(services_refused, counts.get("services_per_hour", 0))
        for cap in CAP_NAMES:
            if cap != "services_per_hour" or services_refused is not None or counts.get(cap):
                REFUSED.labels(cap).set(counts.get(cap, 0))
            if counts.get(cap):
                self._log(cap, counts[cap], tracked.refused.examples.get(cap, ()))

    def _log(self, cap: str, count: int, examples: tuple[str, ...]) -> None:
        now = self.clock()
        if now - self._logged.get(cap, -self.log_every_s) < self.log_every_s:
            return
        self._logged[cap] = now
        named = f", e.g. {', '.join(repr(e[:80]) for e in examples)}" if examples else ""
        log.warning("cap %s=%d reached (%s): %d refused%s; their events are stored, no entity is created", cap,
                    getattr(self.caps, cap), _WHAT[cap], count, named)
