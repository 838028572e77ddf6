"""What every routing policy of the benchmark implements, in the simulator and on the real fleet.

A policy is one caller's load balancer: it picks an instance for each call and hears how each call
ended. Time is passed in (seconds, any epoch), so the same policy object runs in the discrete-event
simulator (bench/sim) and against real HTTP instances (bench/realtime.py). Timers a policy has
(Envoy's 10 s sweep, gRPC's 1 s weight update, MSEC's 5 s block) run when time is passed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from balancer.client import WeightSource


@dataclass(frozen=True)
class LoadReport:
    """A backend's own load, as gRPC's ORCA per-call report carries it (gRFC A51): for the whole
    backend, every caller's calls, over the backend's last reporting second."""

    qps: float
    eps: float
    utilization: float  # cpu_utilization: busy CPU share, 0..1 (and above, when over-committed)


@dataclass(frozen=True)
class Result:
    """How one call ended, as its caller saw it."""

    ok: bool
    latency_s: float
    reached: bool = True  # False: the connection was refused (nothing listening)
    timed_out: bool = False
    load: LoadReport | None = None  # the backend's ORCA report, when the call reached it


@dataclass
class Context:
    """What a policy may use besides its own observations."""

    instances: Sequence[str]
    rng: random.Random
    feed: WeightSource | None = None  # svcpulse: the shared weight feed
    started_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


class Policy(Protocol):
    name: str

    def pick(self, now: float, interface: str) -> str: ...

    def done(self, instance: str, now: float, result: Result) -> None: ...

    def connection_lost(self, instance: str, now: float) -> None:
        """The instance's process went away: its connections closed (a crash, fail-stop)."""

    def out(self, now: float) -> frozenset[str]:
        """Instances this policy has taken out of rotation now (ejected, dead, not connected)."""


Factory = Callable[[Context], Policy]


class Timer:
    """A periodic timer driven by the time passed in: `due(now)` yields each firing time once."""

    def __init__(self, period_s: float, first_s: float) -> None:
        self.period_s, self.next_s = period_s, first_s

    def due(self, now: float) -> list[float]:
        fired = []
        while now >= self.next_s:
            fired.append(self.next_s)
            self.next_s += self.period_s
        return fired
