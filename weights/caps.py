"""Cardinality caps (pure): how many services, instances and interfaces telemetry may create.

A producer can invent names faster than anyone can read them (50,000 one-off callee names made
50,007 permanent services before these caps). The control loop runs every observation through
`track`, which keeps a small ledger of the entities telemetry created and when each was last seen:

- a **service** nobody registered or gave a discovery policy is created only while fewer than
  `services_per_hour` were created in the last hour;
- an **instance** the registry does not hold is created only while its service tracks fewer than
  `instances_per_service` (this bounds what a broad discovery policy lets a producer add);
- an **interface** is created only while its service tracks fewer than `interfaces_per_service`.

Past a cap the events are still stored (the loader writes every valid event); only the entity is
not created: no feed row, no engine state, no weight history. Entities not seen for `forget_ms`
expire, which frees their room. Operator-made entities (registered services and instances, services
with a discovery policy) are exempt and never refused.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

HOUR_MS = 3_600_000
EXAMPLES = 3  # refused names kept per cap for the log line
CAP_NAMES = ("services_per_hour", "instances_per_service", "interfaces_per_service")


@dataclass(frozen=True)
class Caps:
    services_per_hour: int = 200
    instances_per_service: int = 1_000
    interfaces_per_service: int = 500


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Ledger:
    """Entities telemetry created: last-seen ms per service, per (service, instance), per (service, interface)."""

    services: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    created_ms: tuple[int, ...] = ()  # creation times of the services created in the last hour
    instances: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: _frozen({}))
    interfaces: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: _frozen({}))

    def room(self, now_ms: int, caps: Caps) -> int:
        """How many more services telemetry may create now (the hourly cap minus the last hour's)."""
        return max(0, caps.services_per_hour - sum(1 for t in self.created_ms if t > now_ms - HOUR_MS))

    def sizes(self) -> dict[str, int]:
        return {"services": len(self.services), "instances": sum(map(len, self.instances.values())),
                "interfaces": sum(map(len, self.interfaces.values()))}


@dataclass(frozen=True)
class Observation:
    """One service/instance seen in the calls, with the interfaces it served, last seen at last_ms.

    An empty `instance` observes the service alone, with the interfaces it served."""

    service: str
    instance: str
    last_ms: int
    interfaces: Sequence[str] = ()


@dataclass(frozen=True)
class Refused:
    """What this step refused, per cap: how many observations, and a few names for the log line."""

    counts: Mapping[str, int]
    examples: Mapping[str, tuple[str, ...]]

    def __bool__(self) -> bool:
        return any(self.counts.values())


@dataclass(frozen=True)
class Tracked:
    ledger: Ledger
    accepted: frozenset[tuple[str, str]]  # (service, instance) the control loop may go on with
    refused: Refused


class _Step:
    """The mutable working copy of one `track` call (never escapes it)."""

    def __init__(self, ledger: Ledger, now_ms: int, forget_ms: int) -> None:
        fresh = now_ms - forget_ms
        self.services = {s: t for s, t in ledger.services.items() if t >= fresh}
        self.created = [t for t in ledger.created_ms if t > now_ms - HOUR_MS]
        self.instances = {s: {i: t for i, t in m.items() if t >= fresh} for s, m in ledger.instances.items()}
        self.interfaces = {s: {i: t for i, t in m.items() if t >= fresh} for s, m in ledger.interfaces.items()}
        self.counts = dict.fromkeys(CAP_NAMES, 0)
        self.examples: dict[str, list[str]] = {name: [] for name in CAP_NAMES}
        self.accepted: set[tuple[str, str]] = set()

    def refuse(self, cap: str, name: str) -> None:
        self.counts[cap] += 1
        if len(self.examples[cap]) < EXAMPLES:
            self.examples[cap].append(name)

    def ledger(self) -> Ledger:
        return Ledger(_frozen(self.services), tuple(self.created),
                      _frozen({s: _frozen(m) for s, m in self.instances.items() if m}),
                      _frozen({s: _frozen(m) for s, m in self.interfaces.items() if m}))


def _admit_name(table: dict[str, int], name: str, seen_ms: int, cap: int) -> bool:
    """Refresh a known name, add a new one while there is room; False when the cap refuses it."""
    if name in table:
        table[name] = max(table[name], seen_ms)
        return True
    if len(table) >= cap:
        return False
    table[name] = seen_ms
    return True


def _service(step: _Step, obs: Observation, caps: Caps, now_ms: int, exempt: Collection[str]) -> bool:
    if obs.service in step.services or obs.service in exempt:
        step.services[obs.service] = max(step.services.get(obs.service, 0), obs.last_ms)
        return True
    if len(step.created) >= caps.services_per_hour:
        step.refuse("services_per_hour", obs.service)
        return False
    step.services[obs.service] = obs.last_ms
    step.created.append(now_ms)
    return True


def track(ledger: Ledger, observations: Iterable[Observation], now_ms: int, caps: Caps, forget_ms: int,
          exempt_services: Collection[str] = (), registered: Collection[tuple[str, str]] = ()) -> Tracked:
    """One step: expire what was not seen for forget_ms, then create, refresh or refuse each observation."""
    step = _Step(ledger, now_ms, forget_ms)
    for obs in sorted(observations, key=lambda o: (o.last_ms, o.service, o.instance)):  # first come, first kept
        if not _service(step, obs, caps, now_ms, exempt_services):
            continue
        interfaces = step.interfaces.setdefault(obs.service, {})
        for interface in obs.interfaces:
            if not _admit_name(interfaces, interface, obs.last_ms, caps.interfaces_per_service):
                step.refuse("interfaces_per_service", f"{obs.service} {interface}")
        if not obs.instance:
            continue
        known = step.instances.setdefault(obs.service, {})
        key = (obs.service, obs.instance)
        if key in registered or _admit_name(known, obs.instance, obs.last_ms, caps.instances_per_service):
            step.accepted.add(key)
        else:
            step.refuse("instances_per_service", f"{obs.service} {obs.instance}")
    refused = Refused(_frozen(step.counts), _frozen({k: tuple(v) for k, v in step.examples.items()}))
    return Tracked(step.ledger(), frozenset(step.accepted), refused)


def observations(rows: Iterable[Mapping[str, Any]]) -> list[Observation]:
    """Rows of the weights queries (service, instance?, last_ms, interfaces?) -> Observations."""
    return [Observation(r["service"], r.get("instance", ""), int(r["last_ms"]), tuple(r.get("interfaces", ())))
            for r in rows]
