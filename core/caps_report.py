"""Metrics and log lines for the cardinality caps (weights/caps.py), for whichever loop applies them.

Each cap has a counter of refused observations and a warning in the log, at most once a minute per
cap while it keeps refusing, naming the cap, how many were refused and a few of the names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from weights.caps import CAP_NAMES, Caps, Tracked

log = logging.getLogger("svcpulse.caps")

REFUSED = Counter("svcpulse_cap_refused", "Observations refused by a cardinality cap, per cycle (the events "
                  "are stored; no entity is created)", ["cap"])
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

    def report(self, tracked: Tracked) -> None:
        for kind, size in tracked.ledger.sizes().items():
            TRACKED.labels(kind).set(size)
        for cap in CAP_NAMES:
            count = tracked.refused.counts.get(cap, 0)
            if not count:
                continue
            REFUSED.labels(cap).inc(count)
            now = self.clock()
            if now - self._logged.get(cap, -self.log_every_s) >= self.log_every_s:
                self._logged[cap] = now
                examples = ", ".join(repr(e[:80]) for e in tracked.refused.examples.get(cap, ()))
                log.warning("cap %s=%d reached (%s): %d observations refused this cycle, e.g. %s; their events "
                            "are stored, no entity is created", cap, getattr(self.caps, cap), _WHAT[cap], count,
                            examples)
