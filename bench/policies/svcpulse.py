"""svcpulse: the weight feed (pooled over every caller and computed by the real engine) followed by
the real client, balancer.client.Balancer, with its smooth weighted round robin or weighted P2C.

The feed itself is not computed here: the simulator drives `weights.compute_weights` over every
caller's calls (bench/sim/feed.py), the real-time runs follow the API's feed; both hand this policy a
`WeightSource`, exactly what an application gives the Balancer.
"""

from __future__ import annotations

import random
from typing import Literal

from balancer.client import Balancer
from bench.policies.base import Context, Result


class Svcpulse:
    def __init__(self, ctx: Context, picker: Literal["swrr", "p2c", "swrr-local"]) -> None:
        if ctx.feed is None:
            raise ValueError("the svcpulse policy needs the weight feed (Context.feed)")
        self.name = f"svcpulse {picker}"
        self._feed = ctx.feed
        self._now = ctx.started_s
        reachable = ctx.extra.get("reachable")  # the simulator's stand-in for a TCP connect
        reconnect = (lambda instance: reachable(instance, self._now)) if callable(reachable) else None
        self.balancer = Balancer(ctx.feed, picker, rng=random.Random(ctx.rng.getrandbits(64)), clock=self._clock,
                                 reconnect=reconnect)

    def _clock(self) -> float:
        return self._now

    def pick(self, now: float, interface: str) -> str:
        self._now = now
        return self.balancer.pick()

    def done(self, instance: str, now: float, result: Result) -> None:
        self._now = now
        self.balancer.report(instance, result.ok, result.latency_s * 1000, unreachable=not result.reached)

    def connection_lost(self, instance: str, now: float) -> None:
        pass

    def out(self, now: float) -> frozenset[str]:
        states = self._feed.current().states
        ejected = {name for name, state in states.items() if state == "ejected"}
        return frozenset(ejected | self.balancer.guard.skipped(now))
