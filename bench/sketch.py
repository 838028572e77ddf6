"""The weigh worker's latency sketch, measured: svcpulse's DDSketch (weights/sketch.py) next to the
reference DDSketch (PyPI ddsketch) and an HDR histogram (PyPI hdrhistogram), on the worker's workload.

The workload: one sketch per instance per second, ~100 calls each (20,000 events/s over 200
instances), latencies log-normal around 20 ms with a 1% tail near 400 ms. Per sketch kind it prints
the cost of one add, of merging the 10 per-second sketches of a window and reading p50/p99, the
memory of one per-second sketch, and the worst relative error of p50/p99 against the exact values.

    .venv/bin/python bench/sketch.py
"""

from __future__ import annotations

import os
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from ddsketch import DDSketch as ReferenceDDSketch
from hdrh.histogram import HdrHistogram

from weights.sketch import DDSketch, merged

CALLS, SECONDS, WINDOWS = 100, 10, 200


def latencies(rng: random.Random) -> list[float]:
    return [rng.lognormvariate(3.0, 0.4) if rng.random() > 0.01 else rng.uniform(300, 500) for _ in range(CALLS)]


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


class Kind:
    def __init__(self, name: str, new: Callable[[], Any], add: Callable[[Any, float], None],
                 window: Callable[[list[Any]], tuple[float, float]]) -> None:
        self.name, self.new, self.add, self.window = name, new, add, window


def hdr_window(sketches: list[HdrHistogram]) -> tuple[float, float]:
    total = HdrHistogram(1, 60_000_000, 2)
    for sketch in sketches:
        total.add(sketch)
    return total.get_value_at_percentile(50) / 1000, total.get_value_at_percentile(99) / 1000


def reference_window(sketches: list[ReferenceDDSketch]) -> tuple[float, float]:
    total = ReferenceDDSketch(relative_accuracy=0.01)
    for sketch in sketches:
        total.merge(sketch)
    return total.get_quantile_value(0.5), total.get_quantile_value(0.99)


KINDS = [
    Kind("svcpulse DDSketch (1%)", DDSketch, lambda s, v: s.add(v),
         lambda ss: tuple(merged(ss).quantiles((0.5, 0.99)))),
    Kind("ddsketch 3.0.1 (1%)", lambda: ReferenceDDSketch(relative_accuracy=0.01), lambda s, v: s.add(v),
         reference_window),
    Kind("HDR 0.10.8 (1 us..60 s, 2 digits)", lambda: HdrHistogram(1, 60_000_000, 2),
         lambda s, v: s.record_value(max(1, int(v * 1000))), hdr_window),
]


def measure(kind: Kind, data: list[list[list[float]]]) -> None:
    started = time.perf_counter()
    windows = []
    for window in data:
        sketches = []
        for second in window:
            sketch = kind.new()
            for value in second:
                kind.add(sketch, value)
            sketches.append(sketch)
        windows.append(sketches)
    add_us = (time.perf_counter() - started) / (WINDOWS * SECONDS * CALLS) * 1e6
    started = time.perf_counter()
    answers = [kind.window(sketches) for sketches in windows]
    window_us = (time.perf_counter() - started) / WINDOWS * 1e6
    errors = []
    for window, (p50, p99) in zip(data, answers, strict=True):
        flat = [v for second in window for v in second]
        errors += [abs(p50 - exact(flat, 0.5)) / exact(flat, 0.5), abs(p99 - exact(flat, 0.99)) / exact(flat, 0.99)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = [kind.new() for _ in range(100)]
    for sketch in keep:
        for value in data[0][0]:
            kind.add(sketch, value)
    size = (tracemalloc.get_traced_memory()[0] - before) / len(keep)
    tracemalloc.stop()
    print(f"{kind.name:<36} add {add_us:5.2f} us   window merge + p50/p99 {window_us:7.1f} us   "
          f"one per-second sketch {size / 1024:6.1f} KiB   worst error {max(errors):.2%}", flush=True)


def main() -> None:
    rng = random.Random(7)
    data = [[latencies(rng) for _ in range(SECONDS)] for _ in range(WINDOWS)]
    print(f"[sketch] {WINDOWS} instances x {SECONDS} s x {CALLS} calls; Python {sys.version.split()[0]}; "
          f"load average {os.getloadavg()[0]:.1f} (provisional on a shared machine)")
    for kind in KINDS:
        measure(kind, data)


if __name__ == "__main__":
    main()
