"""A mergeable latency sketch: DDSketch with relative accuracy (Masson, Rim, Lee: VLDB 2019). Pure.

Why DDSketch and not HDR (docs/weights.md, "Latency sketch"; bench/sketch.py measures both): the weigh
worker keeps one sketch per instance per second of the window, so most sketches hold a handful of
calls. DDSketch stores only the buckets it saw (a dict of ~10-60 entries here), merges by adding
counts, and answers any quantile within `relative_accuracy` of the true value (1% by default) over
any range, microseconds to minutes. An HDR histogram of the same reach preallocates thousands of
counters per sketch: megabytes across 200 instances x 10 s, for accuracy the engine does not need.

A value v > 0 goes to bucket ceil(log(v) / log(gamma)), gamma = (1 + a) / (1 - a); the bucket's
representative 2 * gamma**k / (gamma + 1) is within a of every value in it. Values at or below
`MIN_VALUE` (sub-microsecond latencies, zeros) are counted in a zero bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MIN_VALUE = 1e-3  # ms: anything faster counts as 0 (and keeps the bucket index range small)


class DDSketch:
    __slots__ = ("_inv_log_gamma", "bins", "count", "gamma", "zero_count")

    def __init__(self, relative_accuracy: float = 0.01) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError(f"relative_accuracy must be within (0, 1), got {relative_accuracy}")
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._inv_log_gamma = 1 / math.log(self.gamma)
        self.bins: dict[int, int] = {}
        self.zero_count = 0
        self.count = 0

    def add(self, value: float) -> None:
        self.count += 1
        if value <= MIN_VALUE:
            self.zero_count += 1
            return
        key = math.ceil(math.log(value) * self._inv_log_gamma)
        bins = self.bins
        bins[key] = bins.get(key, 0) + 1

    def merge(self, other: DDSketch) -> None:
        """Add `other`'s counts into this sketch (both must have the same accuracy)."""
        if other.gamma != self.gamma:
            raise ValueError("cannot merge sketches of different relative accuracy")
        bins = self.bins
        for key, n in other.bins.items():
            bins[key] = bins.get(key, 0) + n
        self.zero_count += other.zero_count
        self.count += other.count

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """Values at the given quantiles (0..1), in one pass over the sorted buckets; 0.0 when empty."""
        wanted = sorted((q, n) for n, q in enumerate(qs))
        out = [0.0] * len(wanted)
        if self.count == 0:
            return out
        ranks = [(q * (self.count - 1), n) for q, n in wanted]
        seen, i = self.zero_count, 0
        while i < len(ranks) and ranks[i][0] < seen:
            i += 1  # those quantiles fall in the zero bucket
        for key in sorted(self.bins):
            seen += self.bins[key]
            while i < len(ranks) and ranks[i][0] < seen:
                out[ranks[i][1]] = 2 * self.gamma**key / (self.gamma + 1)
                i += 1
        return out


def merged(sketches: Iterable[DDSketch], relative_accuracy: float = 0.01) -> DDSketch:
    total = DDSketch(relative_accuracy)
    for sketch in sketches:
        total.merge(sketch)
    return total
