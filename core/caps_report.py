"""Metrics and log lines for the cardinality caps (weights/caps.py), exported by the weigh worker.

Each cap has a gauge of what it refuses now and a warning in the log, at most once a minute per cap
while it keeps refusing, naming the cap, how many were refused and a few of the names. Instances
and interfaces are counted every cycle; services over the hourly cap are the ones the worker refused
within forget_s (`services_refused`, weigh/gate.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge

from weights.caps import CAP_NAMES, Caps, Tracked

log = logging.getLogger("svcpulse.caps")

REFUSED = Gauge("svcpulse_cap_refused", "Entities a cardinality cap refuses now (their events are stored; no "
                "entity is created): services over the hourly cap seen within forget_s, instances and "
                "interfaces refused in the last cycle (per weigh worker)", ["cap"])
TRACKED = Gauge("svcpulse_entities_tracked", "Entities telemetry created that the control loop tracks now",
                ["kind"])
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
