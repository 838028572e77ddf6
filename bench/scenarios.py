"""Every scenario of the routing benchmark, in one place (issue 16; docs/weights.md, "Against the peers").

A scenario is a fleet, its callers and one fault that starts `warmup_s` into the run and lasts to
its end. Both engines read it: the discrete-event simulator (bench/sim) and the real-time runs on
svcpulse/fleet.py (bench/realtime.py). Instance i is named f"10.0.0.{i + 1}:8080" in the simulator.

The default fleet: 10 instances, each call ~20 ms (12 ms of CPU on one core, 8 ms waiting on a
downstream; lognormal noise), 50 calls/s per instance (60% CPU), 0.1% background errors, from 4
callers at 125 calls/s each. Ten hosts, not five, because Envoy's success-rate rule cannot fire on
five (one host can be at most (n-1)/sqrt(n) = 1.79 stdevs below the mean, under its 1.9), and
each caller sends a host ~12.5 calls/s, so it holds Envoy's 100 calls per 10 s interval.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

INTERFACES = (("get", 0.7), ("list", 0.2), ("put", 0.1))  # every call names one (MSEC: service + interface)


@dataclass(frozen=True)
class Fault:
    """What goes wrong with `instances` (indices) from the fault time on."""

    instances: tuple[int, ...]
    error_rate: float = 0.0  # share of calls answered with an error (HTTP 503 / gRPC UNAVAILABLE)
    extra_ms: float = 0.0  # added to every call, waiting (no CPU): a slow downstream, a GC pause
    refuse: bool = False  # connections refused: the process is gone (fail-stop)
    interface: str | None = None  # only calls to this interface are affected (gray failure)
    speed: float = 1.0  # CPU speed: 0.5 = half the capacity, so queues grow with concurrency
    period_s: float = 0.0  # > 0: on for period_s, off for period_s, repeating (flapping)

    def active(self, since_fault_s: float) -> bool:
        if since_fault_s < 0:
            return False
        return self.period_s <= 0 or int(since_fault_s // self.period_s) % 2 == 0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    seed: int
    fault: Fault | None
    instances: int = 10
    callers: int = 4
    calls_per_s: float = 125.0  # per caller, Poisson arrivals
    cores: int | None = 1  # per instance; None = unlimited concurrency (svcpulse/fleet.py's asyncio app)
    work_ms: float = 12.0  # CPU per call
    wait_ms: float = 8.0  # waiting per call
    noise_errors: float = 0.001
    noise: Literal["lognormal", "uniform"] = "lognormal"  # uniform: wait_ms x U(0.8, 1.2), svcpulse/fleet.py's
    timeout_s: float = 1.0  # the callers' deadline: a slower call fails at 1 s
    warmup_s: float = 20.0
    measure_s: float = 60.0
    react_share: float = 0.5  # "reacted" = the faulty instances' share of calls at or below this part of fair

    @property
    def faulty(self) -> frozenset[int]:
        return frozenset(self.fault.instances) if self.fault else frozenset()

    def with_seed(self, seed: int) -> Scenario:
        return replace(self, seed=seed)


def _fleet_rate(instances: int, callers: int = 4, per_instance: float = 50.0) -> float:
    """Calls/s per caller that give every instance `per_instance` calls/s at equal shares."""
    return per_instance * instances / callers


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("fail-stop", "instance 3 refuses connections (its process is gone)", 101,
             Fault((2,), refuse=True)),
    Scenario("errors-50", "instance 3 answers 50% of calls with an error", 102, Fault((2,), error_rate=0.5)),
    Scenario("errors-5", "instance 3 answers 5% of calls with an error", 103, Fault((2,), error_rate=0.05)),
    Scenario("slow-200ms", "instance 3 takes 200 ms longer per call", 104, Fault((2,), extra_ms=200)),
    Scenario("slow-2x", "instance 3 takes 20 ms longer per call (2x)", 105, Fault((2,), extra_ms=20)),
    Scenario("gray", "one interface (put, 10% of calls) of instance 3 fails every call", 106,
             Fault((2,), error_rate=1.0, interface="put")),
    Scenario("flapping", "instance 3 at 50% errors for 10 s, fine for 10 s, and again", 107,
             Fault((2,), error_rate=0.5, period_s=10)),
    Scenario("overload", "instance 3 has half the CPU: its queue and latency grow with its calls", 108,
             Fault((2,), speed=0.5), react_share=0.75),
    Scenario("correlated", "4 of 7 instances at 40% errors", 109, Fault((0, 1, 2, 3), error_rate=0.4),
             instances=7, calls_per_s=_fleet_rate(7)),
    # The same fault on a busier fleet (78% CPU): draining the failing majority overloads the rest.
    Scenario("correlated-busy", "4 of 7 instances at 40% errors, on a fleet at 78% CPU", 112,
             Fault((0, 1, 2, 3), error_rate=0.4), instances=7, calls_per_s=_fleet_rate(7, per_instance=65.0)),
    Scenario("no-fault", "noise only: 0.1% errors and lognormal latency everywhere", 110, None),
    Scenario("many-callers", "30 callers at 3 calls/s each; instance 3 answers 50% with an error", 111,
             Fault((2,), error_rate=0.5), callers=30, calls_per_s=3.0),
)
SEED_OFFSETS = (0, 1000, 2000)  # the 3 seeds of each scenario: seed, seed + 1000, seed + 2000


REALTIME = ("errors-50", "slow-200ms", "no-fault")  # run on real parts too (bench/realtime.py)


def realtime_variant(scenario: Scenario) -> Scenario:
    """The scenario as the real fleet runs it, for both engines: svcpulse/fleet.py's asyncio instances
    (unlimited concurrency, 20 ms x U(0.8, 1.2), no CPU model), 6 of them, 2 callers at 40 calls/s,
    which one Python process on a shared machine drives reliably; 20 s warm-up, 40 s measured."""
    return replace(scenario, instances=6, callers=2, calls_per_s=40.0, cores=None, work_ms=0.0, wait_ms=20.0,
                   noise="uniform", warmup_s=20.0, measure_s=40.0)


def by_name(name: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(f"no scenario {name!r}; known: {', '.join(s.name for s in SCENARIOS)}")


def instance_names(scenario: Scenario) -> list[str]:
    return [f"10.0.0.{i + 1}:8080" for i in range(scenario.instances)]
