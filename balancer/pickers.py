"""Pure instance pickers over integer weights from the weight feed (docs/balancer.md).

All pickers skip weight 0 ("send nothing"). When no instance has a positive weight, each picker
falls back to all instances at equal weight: the feed only says that when everything is drained
or unknown, and a client with calls to make does better spreading them than failing all of them.
No clocks and no global randomness: pass a seeded `random.Random` to get a repeatable sequence.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Protocol


class NoInstancesError(LookupError):
    """The picker has no instance at all (not even a zero-weight one)."""


class Picker(Protocol):
    def update(self, weights: Mapping[str, int]) -> None: ...

    def pick(self, inflight: Mapping[str, int] | None = None) -> str: ...


def routable(weights: Mapping[str, int]) -> dict[str, int]:
    """Instances with a positive weight; if there are none, all of them at weight 1 (the fallback)."""
    positive = {name: w for name, w in weights.items() if w > 0}
    return positive or dict.fromkeys(weights, 1)


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: exact shares over each cycle of sum(weights) picks,
    interleaved (weights 5,1,1 give a a b a c a a, not a a a a a b c). Ignores in-flight counts."""

    def __init__(self, weights: Mapping[str, int]) -> None:
        self._weights: dict[str, int] = {}
        self._current: dict[str, int] = {}
        self.update(weights)

    def update(self, weights: Mapping[str, int]) -> None:
        """New weights; instances that stay keep their position in the cycle (no burst on update)."""
        self._weights = routable(weights)
        self._current = {name: self._current.get(name, 0) for name in self._weights}

    def pick(self, inflight: Mapping[str, int] | None = None) -> str:
        if not self._weights:
            raise NoInstancesError("no instances to pick from")
        total = 0
        best = ""
        for name, weight in self._weights.items():
            self._current[name] += weight
            total += weight
            if not best or self._current[name] > self._current[best]:
                best = name
        self._current[best] -= total
        return best


class WeightedP2C:
    """Weighted power of two choices: draw two distinct instances with probability proportional to
    weight, keep the one with fewer calls in flight per unit of weight.

    Ties (always the case when nothing is in flight) keep the first draw, so without concurrency the
    shares equal the weights; under load, a busy instance loses to an idle one. An instance's share
    is at most about twice its weighted share (it can win as either draw).
    """

    def __init__(self, weights: Mapping[str, int], rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._names: list[str] = []
        self._weights: list[int] = []
        self._cumulative: list[int] = []
        self.update(weights)

    def update(self, weights: Mapping[str, int]) -> None:
        usable = routable(weights)
        self._names = list(usable)
        self._weights = list(usable.values())
        self._cumulative = list(itertools.accumulate(self._weights))

    def pick(self, inflight: Mapping[str, int] | None = None) -> str:
        if not self._names:
            raise NoInstancesError("no instances to pick from")
        first = self._draw()
        if len(self._names) == 1:
            return self._names[first]
        second = self._draw(excluding=first)
        inflight = inflight or {}

        def load(i: int) -> float:
            return inflight.get(self._names[i], 0) / self._weights[i]

        return self._names[second if load(second) < load(first) else first]

    def draw_other(self, name: str) -> str | None:
        """A weighted draw other than `name` (None when there is no other instance)."""
        if len(self._names) < 2:
            return None
        try:
            index = self._names.index(name)
        except ValueError:
            return self._names[self._draw()]
        return self._names[self._draw(excluding=index)]

    def _draw(self, excluding: int | None = None) -> int:
        """Index drawn proportionally to weight, optionally without one index (O(log n))."""
        skipped = 0 if excluding is None else self._weights[excluding]
        point = self._rng.random() * (self._cumulative[-1] - skipped)
        # Without one index: draw over the rest, then step over the excluded interval.
        if excluding is not None and point >= self._cumulative[excluding] - skipped:
            point += skipped
        # min(): float rounding can land a point exactly on the total.
        return min(bisect.bisect_right(self._cumulative, point), len(self._names) - 1)


class PeakEwma:
    """One client's own latency view per instance: Finagle's Peak EWMA (loadbalancer/PeakEwma.scala).

    The cost jumps to a slower call at once and otherwise decays towards newer ones with
    exp(-dt / decay_s); reading it decays it to now. Unknown until the first call ends.
    """

    def __init__(self, decay_s: float = 10.0) -> None:
        self.decay_s = decay_s
        self._cost: dict[str, tuple[float, float]] = {}  # instance -> (cost ms, as of)

    def observe(self, instance: str, latency_ms: float, now: float) -> None:
        cost = self.cost(instance, now)
        if cost is None or latency_ms > cost:
            self._cost[instance] = (latency_ms, now)
        else:
            w = math.exp(-max(now - self._cost[instance][1], 0.0) / self.decay_s)
            self._cost[instance] = (cost * w + latency_ms * (1.0 - w), now)

    def cost(self, instance: str, now: float) -> float | None:
        known = self._cost.get(instance)
        if known is None:
            return None
        return known[0] * math.exp(-max(now - known[1], 0.0) / self.decay_s)


class SwrrLocalVeto:
    """The feed's shares by smooth weighted round robin, with a local veto (issue 16).

    Each pick takes the SWRR candidate unless this client's own view of it, latency x (calls in
    flight + 1) as Finagle's P2C Peak EWMA weighs it, is more than `veto_ratio` times that of a
    second instance drawn by weight; then the second one goes. So shares follow the feed, calls stay
    spread as evenly as round robin spreads them, and an instance that turned slow or is queueing
    loses calls within milliseconds, long before the feed's next cycle says so for every caller.
    The ratio is 3, not 2: Peak EWMA jumps to every peak, and on a busy fleet one instance's peak is
    often twice another's by chance; at 2x those vetoes cost 1.8 ms of p99 against round robin
    (docs/weights.md, "Against the peers", correlated-busy), while a real slowdown is far above 3x.
    """

    def __init__(self, weights: Mapping[str, int], rng: random.Random | None = None, *,
                 veto_ratio: float = 3.0, decay_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._swrr = SmoothWeightedRoundRobin(weights)
        self._second = WeightedP2C(weights, rng)
        self.latency = PeakEwma(decay_s)
        self.veto_ratio = veto_ratio
        self._clock = clock

    def update(self, weights: Mapping[str, int]) -> None:
        self._swrr.update(weights)
        self._second.update(weights)

    def observe(self, instance: str, latency_ms: float) -> None:
        self.latency.observe(instance, latency_ms, self._clock())

    def pick(self, inflight: Mapping[str, int] | None = None) -> str:
        first = self._swrr.pick()
        second = self._second.draw_other(first)
        if second is None:
            return first
        now, inflight = self._clock(), inflight or {}
        cost_first, cost_second = self.latency.cost(first, now), self.latency.cost(second, now)
        if cost_first is None or cost_second is None:  # no view of one of them yet: the feed decides
            return first
        load_first = cost_first * (inflight.get(first, 0) + 1)
        load_second = cost_second * (inflight.get(second, 0) + 1)
        return second if load_first > self.veto_ratio * load_second else first
