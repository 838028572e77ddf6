"""Tencent MSEC's dynamic routing (the nlb agent on each caller machine; /work/shared/ANCHORS.md).

Every 5 s block, per instance, from this caller's own calls in the block (counters reset each block):
  s = success / (success + failed), where only transport failures and timeouts are failures
  (an answered error is a success to MSEC: its routing only sees the network);
  no calls: weight unchanged; s >= 0.98: +5% of static (a dead instance revives at 10%);
  0 < s < 0.98: weight = floor(weight x s^2); s ~ 0, or weight 0: dead.
Protective mode: when more than half the instances are below half their static weight, the bar
becomes min(service-wide success, 0.98) and no weight is reduced. Dead instances share one slot
of ~1% of the total weight, for probing. Picks are weighted random. Latency is not used.
"""

from __future__ import annotations

import math

from bench.policies.base import Context, Result, Timer

BLOCK_S = 5.0
STATIC = 100
BAR = 0.98
STEP_UP = 5  # +5% of static per good block
REVIVE = 10  # a dead instance comes back at 10% of static
DEAD_SLOT = 0.01  # the dead instances' shared probing slot, of the total weight
DEAD_BELOW = 0.01  # "s ~ 0"


class Msec:
    name = "msec"

    def __init__(self, ctx: Context) -> None:
        self._rng = ctx.rng
        self._instances = list(ctx.instances)
        self.weights = dict.fromkeys(self._instances, STATIC)
        self.dead: set[str] = set()
        self._ok = dict.fromkeys(self._instances, 0)
        self._failed = dict.fromkeys(self._instances, 0)
        self._blocks = Timer(BLOCK_S, ctx.started_s + ctx.rng.uniform(0, BLOCK_S))
        self.protective = False

    def pick(self, now: float, interface: str) -> str:
        self._advance(now)
        live = [(i, self.weights[i]) for i in self._instances if i not in self.dead and self.weights[i] > 0]
        total = sum(w for _, w in live)
        slot = DEAD_SLOT * total if self.dead and live else 0.0
        point = self._rng.random() * (total + slot)
        if point >= total or not live:
            return self._rng.choice(sorted(self.dead) or self._instances)
        for instance, weight in live:
            point -= weight
            if point < 0:
                return instance
        return live[-1][0]

    def done(self, instance: str, now: float, result: Result) -> None:
        self._advance(now)
        if result.reached and not result.timed_out:
            self._ok[instance] += 1
        else:
            self._failed[instance] += 1

    def connection_lost(self, instance: str, now: float) -> None:
        pass

    def out(self, now: float) -> frozenset[str]:
        self._advance(now)
        return frozenset(self.dead)

    def _advance(self, now: float) -> None:
        for _ in self._blocks.due(now):
            self._block()

    def _block(self) -> None:
        below_half = sum(1 for i in self._instances if i in self.dead or self.weights[i] < STATIC / 2)
        self.protective = below_half > len(self._instances) / 2
        bar = BAR
        if self.protective:
            ok, failed = sum(self._ok.values()), sum(self._failed.values())
            bar = min(ok / (ok + failed), BAR) if ok + failed else BAR
        for instance in self._instances:
            self._judge(instance, bar)
            self._ok[instance] = self._failed[instance] = 0

    def _judge(self, instance: str, bar: float) -> None:
        ok, failed = self._ok[instance], self._failed[instance]
        if ok + failed == 0:
            return
        s = ok / (ok + failed)
        if s >= bar:
            if instance in self.dead:
                self.dead.discard(instance)
                self.weights[instance] = REVIVE
            else:
                self.weights[instance] = min(STATIC, self.weights[instance] + STEP_UP)
        elif not self.protective:
            weight = math.floor(self.weights[instance] * s * s) if s >= DEAD_BELOW else 0
            self.weights[instance] = weight
            if weight == 0:
                self.dead.add(instance)
