"""Which rpc events a weigh worker keeps in its windows: the caps (weights/caps.py) applied per event.

The cycle decides what telemetry creates (weights/cycle.py, `assemble_inputs`), but only once per
tick; a flood of one-off callee names between two ticks would otherwise fill the windows first (and
every tick's work with them). So each event passes this gate before it is counted:
- a service an operator made (registered, or with a discovery policy), or one held already, passes;
- a new service passes while the hourly cap has room left (the room the ledger had at the last tick,
  less what passed since); the others are refused, and remembered (name -> last seen) for the gauge
  `svcpulse_cap_refused{cap="services_per_hour"}` until forget_s passes without them;
- a service holds at most two sides of `instances_per_service` instances, registered ones aside.

Until the control tables are known (`arm`), nothing is refused: a policy or registration not read yet
must not cost its service the replayed window. Refused events are still stored by the loader.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from weights.admission import Authority
from weights.caps import Caps, Ledger
from weights.window import Windows

MAX_REFUSED_NAMES = 100_000  # names remembered for the gauge; past this the gauge reads "at least"


class Gate:
    def __init__(self, caps: Caps, forget_ms: int) -> None:
        self.caps, self.forget_ms = caps, forget_ms
        self.armed = False
        self.made: Collection[str] = frozenset()
        self.tracked: Collection[str] = frozenset()  # services the ledger holds (created within the hour)
        self.registered: Collection[tuple[str, str]] = frozenset()
        self.room = caps.services_per_hour
        self.refused: dict[str, int] = {}  # service -> last refused event's ts_ms

    def arm(self, made: Authority, ledger: Ledger, now_ms: int) -> None:
        """Once per tick, after the cycle: what operators made and the room the caps left."""
        self.armed = True
        self.made, self.registered, self.tracked = made.operator_made, made.instances.keys(), ledger.services.keys()
        self.room = ledger.room(now_ms, self.caps)
        forget_before = now_ms - self.forget_ms
        self.refused = {s: ts for s, ts in self.refused.items() if ts >= forget_before and s not in self.made}

    def passes(self, windows: Windows, service: str, instance: str, side: str, ts_ms: int) -> bool:
        held = windows.services.get(service)
        if held is None and self.armed and service not in self.made and service not in self.tracked:
            if self.room <= 0:
                self.refuse([service], ts_ms)
                return False
            self.room -= 1
        if held is None or (instance, side) in held or not self.armed:
            return True
        return (service, instance) in self.registered or len(held) < 2 * self.caps.instances_per_service

    def refuse(self, services: Iterable[str], ts_ms: int) -> None:
        """Remember refused services (also those the cycle refused after they were held)."""
        for service in services:
            if service in self.refused or len(self.refused) < MAX_REFUSED_NAMES:
                self.refused[service] = max(ts_ms, self.refused.get(service, 0))
