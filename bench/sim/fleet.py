"""Simulated instances: CPU cores with a FIFO queue, waiting time, faults, and ORCA-style load stats.

A call takes `work_ms` of CPU on the first free core (FIFO: an arriving call takes the core that
frees first, so its start time is known on arrival and no CPU events are needed), then `wait_ms`
of waiting (a downstream); both with lognormal noise. Latency therefore grows with concurrency
once an instance's cores are busy, which is what "overload" needs and what least-request pickers
exploit. `cores=None` means unlimited concurrency (the asyncio instances of svcpulse/fleet.py).
"""

from __future__ import annotations

import heapq
import math
import random

from bench.policies.base import LoadReport, Result
from bench.scenarios import Scenario

REFUSED_S = 0.001  # a refused connect costs about a round trip
WORK_SIGMA, WAIT_SIGMA = 0.25, 0.5  # lognormal noise of CPU and waiting time
_RING = 4  # seconds of load statistics kept (the report uses the last full second)


class SimInstance:
    def __init__(self, name: str, index: int, scenario: Scenario, rng: random.Random) -> None:
        self.name, self.index = name, index
        self._s = scenario
        self._rng = rng
        self._fault = scenario.fault if scenario.fault and index in scenario.fault.instances else None
        self._fault_at = scenario.warmup_s
        self._cores = [0.0] * scenario.cores if scenario.cores else None  # heap of times each core frees
        self._stat_second = [-1] * _RING
        self._stat_calls = [0] * _RING
        self._stat_errors = [0] * _RING
        self._stat_busy = [0.0] * _RING

    def refusing(self, now: float) -> bool:
        return bool(self._fault and self._fault.refuse and self._fault.active(now - self._fault_at))

    def serve(self, now: float, interface: str) -> Result:
        """The call's outcome and latency as its caller sees it (the deadline applied)."""
        fault = self._fault if self._fault and self._fault.active(now - self._fault_at) else None
        if fault and fault.refuse:
            return Result(ok=False, latency_s=REFUSED_S, reached=False)
        speed = self._fault.speed if self._fault and now >= self._fault_at else 1.0
        work = self._s.work_ms / 1000 * math.exp(self._rng.gauss(0, WORK_SIGMA)) / speed
        if self._s.noise == "uniform":
            wait = self._s.wait_ms / 1000 * self._rng.uniform(0.8, 1.2)
        else:
            wait = self._s.wait_ms / 1000 * math.exp(self._rng.gauss(0, WAIT_SIGMA))
        failed = self._rng.random() < self._s.noise_errors
        if fault and (fault.interface is None or fault.interface == interface):
            wait += fault.extra_ms / 1000
            failed = failed or self._rng.random() < fault.error_rate
        start = now
        if self._cores is not None:
            start = max(now, self._cores[0])
            heapq.heapreplace(self._cores, start + work)
        latency = start - now + work + wait
        self._count(now + latency, failed, work)
        if latency >= self._s.timeout_s:
            return Result(ok=False, latency_s=self._s.timeout_s, timed_out=True)
        return Result(ok=not failed, latency_s=latency, load=self._report(now + latency))

    def _count(self, end: float, failed: bool, work: float) -> None:
        second = int(end)
        slot = second % _RING
        if self._stat_second[slot] != second:
            self._stat_second[slot] = second
            self._stat_calls[slot] = self._stat_errors[slot] = 0
            self._stat_busy[slot] = 0.0
        self._stat_calls[slot] += 1
        self._stat_errors[slot] += failed
        self._stat_busy[slot] += work

    def _report(self, at: float) -> LoadReport:
        """The backend's last full second: qps, eps and CPU utilization over its cores."""
        second = int(at) - 1
        slot = second % _RING
        if self._stat_second[slot] != second:
            return LoadReport(0.0, 0.0, 0.0)
        cores = len(self._cores) if self._cores is not None else 1
        return LoadReport(self._stat_calls[slot], self._stat_errors[slot], self._stat_busy[slot] / cores)
