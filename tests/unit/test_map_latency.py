"""api/servicemap/latency.py: the map's p50/p99 from latency bucket counts, pure (the engines' bucket
numbering is checked against it in tests/integration/test_map_latency_buckets.py)."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest

from api.servicemap.latency import ACCURACY, ZERO_BUCKET, quantiles_ms, sketch_of, with_latency
from weights.sketch import DDSketch

MIGRATION = Path(__file__).resolve().parents[2] / "pipeline/migrations/0011_edge_latency_buckets.sql"


def buckets_of(latencies: list[float]) -> dict[int, int]:
    """What the rollup's views count (their bucket expression, in Python)."""
    counts: dict[int, int] = {}
    for value in latencies:
        bucket = math.ceil(math.log(value) * 9.991661103824153) if value > 1e-3 else ZERO_BUCKET
        counts[bucket] = counts.get(bucket, 0) + 1
    return counts


def exact(latencies: list[float], q: float) -> float:
    return sorted(latencies)[int(q * (len(latencies) - 1))]


def test_the_migration_buckets_by_the_accuracy_the_map_reads_with() -> None:
    factors = set(re.findall(r"log\(latency_ms\) \* ([0-9.]+)", MIGRATION.read_text()))
    gamma = (1 + ACCURACY) / (1 - ACCURACY)
    assert len(factors) == 1 and float(factors.pop()) == pytest.approx(1 / math.log(gamma), rel=1e-12)


@pytest.mark.parametrize("shape", ["uniform", "lognormal", "bimodal"])
def test_p50_and_p99_from_buckets_are_within_the_accuracy_of_the_exact_ones(shape: str) -> None:
    rng = random.Random(17)
    draw = {"uniform": lambda: rng.uniform(1, 200), "lognormal": lambda: rng.lognormvariate(3, 1.2),
            "bimodal": lambda: rng.choice((rng.uniform(2, 4), rng.uniform(800, 1200)))}[shape]
    latencies = [draw() for _ in range(20_000)]
    p50, p99 = quantiles_ms(sketch_of(buckets_of(latencies).items()))
    assert p50 == pytest.approx(exact(latencies, 0.5), rel=ACCURACY)
    assert p99 == pytest.approx(exact(latencies, 0.99), rel=ACCURACY)


def test_the_sketch_of_buckets_equals_the_sketch_of_the_calls() -> None:
    latencies = [0.0, 0.0005, 0.4, 3.0, 3.1, 95.0, 2500.0]
    direct = DDSketch(ACCURACY)
    for value in latencies:
        direct.add(value)
    summed = sketch_of(buckets_of(latencies).items())
    assert (summed.bins, summed.zero_count, summed.count) == (direct.bins, direct.zero_count, direct.count)
    assert quantiles_ms(summed) == (round(direct.quantiles((0.5,))[0], 3), round(direct.quantiles((0.99,))[0], 3))


def test_no_calls_no_quantiles() -> None:
    assert quantiles_ms(DDSketch(ACCURACY)) == (None, None)


def test_pairs_get_their_quantiles_and_callees_the_quantiles_of_their_summed_buckets() -> None:
    fast, slow = buckets_of([10.0] * 99), buckets_of([1000.0] * 2)
    pairs = [{"caller": "a", "callee": "c", "side": "client", "calls": 99, "errors": 1, "timeouts": 0},
             {"caller": "b", "callee": "c", "side": "client", "calls": 2, "errors": 0, "timeouts": 2},
             {"caller": "a", "callee": "c", "side": "server", "calls": 5, "errors": 0, "timeouts": 0}]
    rows, callees = with_latency(pairs, {("a", "c", "client"): fast, ("b", "c", "client"): slow})
    assert rows[0]["p99"] == pytest.approx(10.0, rel=ACCURACY) and rows[1]["p50"] == pytest.approx(1000, rel=ACCURACY)
    assert rows[2]["p50"] is None and rows[2]["p99"] is None  # calls loaded before migration 0011: no buckets
    client = next(c for c in callees if c["side"] == "client")
    assert (client["caller"], client["calls"], client["errors"], client["timeouts"]) == ("", 101, 1, 2)
    # 101 calls: rank 0.99 * 100 = 99 is the first slow call, so the callee's p99 is the slow caller's.
    assert client["p50"] == pytest.approx(10.0, rel=ACCURACY) and client["p99"] == pytest.approx(1000, rel=ACCURACY)
    server = next(c for c in callees if c["side"] == "server")
    assert (server["calls"], server["p99"]) == (5, None)
