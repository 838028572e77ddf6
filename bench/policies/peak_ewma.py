"""Finagle's P2C with the Peak EWMA load metric (Balancers.p2cPeakEwma; Linkerd's default balancer).

From finagle-core loadbalancer/PeakEwma.scala and p2c/P2CPick.scala:
- cost is an EWMA of round-trip times that jumps to a new peak at once (rtt > cost) and otherwise
  decays with w = exp(-dt / decayTime); reading the load first decays it to now (observe(0));
- load = cost x (pending + 1); a node with no latency yet but calls pending costs Penalty + pending;
- pick: two DISTINCT nodes uniformly at random, the lower load wins, ties go to the second draw;
- decayTime defaults to 10 s (Balancers.p2cPeakEwma(decayTime: Duration = 10.seconds)).
A failed call ends like any other (its rtt is observed), so fast failures look cheap: Finagle pairs
the balancer with failure accrual, which is a separate module and not part of this policy.
"""

from __future__ import annotations

import math

from bench.policies.base import Context, Result

DECAY_S = 10.0  # Balancers.p2cPeakEwma decayTime default
PENALTY = float((2**63 - 1) >> 16)  # PeakEwma.Metric: Long.MaxValue >> 16


class _Metric:
    __slots__ = ("cost", "pending", "stamp")

    def __init__(self, now: float) -> None:
        self.stamp, self.pending, self.cost = now, 0, 0.0

    def observe(self, rtt: float, now: float, tau: float) -> None:
        w = math.exp(-max(now - self.stamp, 0.0) / tau)
        self.cost = rtt if rtt > self.cost else self.cost * w + rtt * (1.0 - w)
        self.stamp = now

    def load(self, now: float, tau: float) -> float:
        self.observe(0.0, now, tau)
        if self.cost == 0.0 and self.pending != 0:
            return PENALTY + self.pending
        return self.cost * (self.pending + 1)


class PeakEwma:
    name = "peak ewma"

    def __init__(self, ctx: Context, decay_s: float = DECAY_S) -> None:
        self._rng = ctx.rng
        self._nodes = list(ctx.instances)
        self._metrics = {n: _Metric(ctx.started_s) for n in self._nodes}
        self._tau = decay_s

    def pick(self, now: float, interface: str) -> str:
        n = len(self._nodes)
        if n == 1:
            chosen = self._nodes[0]
        else:
            a = int(self._rng.random() * n)
            b = int(self._rng.random() * (n - 1))
            if b >= a:
                b += 1
            node_a, node_b = self._nodes[a], self._nodes[b]
            load_a = self._metrics[node_a].load(now, self._tau)
            load_b = self._metrics[node_b].load(now, self._tau)
            chosen = node_a if load_a < load_b else node_b
        self._metrics[chosen].pending += 1
        return chosen

    def done(self, instance: str, now: float, result: Result) -> None:
        metric = self._metrics[instance]
        metric.pending -= 1
        metric.observe(result.latency_s, now, self._tau)

    def connection_lost(self, instance: str, now: float) -> None:
        pass

    def out(self, now: float) -> frozenset[str]:
        return frozenset()
