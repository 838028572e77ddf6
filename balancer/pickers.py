"""Pure instance pickers over integer weights from the weight feed (docs/balancer.md).

Both pickers skip weight 0 ("send nothing"). When no instance has a positive weight, each picker
falls back to all instances at equal weight: the feed only says that when everything is drained
or unknown, and a client with calls to make does better spreading them than failing all of them.
No clocks and no global randomness: pass a seeded `random.Random` to get a repeatable sequence.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping
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

    def _draw(self, excluding: int | None = None) -> int:
        """Index drawn proportionally to weight, optionally without one index (O(log n))."""
        skipped = 0 if excluding is None else self._weights[excluding]
        point = self._rng.random() * (self._cumulative[-1] - skipped)
        # Without one index: draw over the rest, then step over the excluded interval.
        if excluding is not None and point >= self._cumulative[excluding] - skipped:
            point += skipped
        # min(): float rounding can land a point exactly on the total.
        return min(bisect.bisect_right(self._cumulative, point), len(self._names) - 1)
