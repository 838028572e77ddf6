"""The map's latency quantiles from bucket counts, pure: rpc_edge_latency_* rows (migration 0011) in,
p50/p99 per (caller, callee, side) and per (callee, side) out.

The rollups count calls per log-spaced latency bucket, DDSketch's buckets at ACCURACY relative
accuracy: bucket k holds the latencies in (gamma**(k-1), gamma**k] ms, gamma = (1 + a) / (1 - a), and
its representative 2 * gamma**k / (gamma + 1) is within a of each of them, so a quantile read from
summed counts is within 5% of the latency of the call at that rank (no interpolation needed: the bound
holds for every range and every mix of edges). Counts add exactly, where t-digests merge approximately
and at a cost that dominated the map (docs/scaling.md, "The service map").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from weights.sketch import DDSketch

ACCURACY = 0.05  # the migration's factor is 1 / ln((1 + ACCURACY) / (1 - ACCURACY)); a test checks it
ZERO_BUCKET = -32768  # latencies at or below weights.sketch.MIN_VALUE (the sketch's zero bucket)

Key = tuple[str, str, str]  # (caller, callee, side)
Buckets = Mapping[int, int]  # bucket -> calls


def sketch_of(buckets: Iterable[tuple[int, int]], into: DDSketch | None = None) -> DDSketch:
    """A DDSketch holding the (bucket, calls) counts (added to `into` when given)."""
    sketch = into if into is not None else DDSketch(ACCURACY)
    for bucket, calls in buckets:
        sketch.count += calls
        if bucket == ZERO_BUCKET:
            sketch.zero_count += calls
        else:
            sketch.bins[bucket] = sketch.bins.get(bucket, 0) + calls
    return sketch


def quantiles_ms(sketch: DDSketch) -> tuple[float | None, float | None]:
    """(p50, p99) in ms, rounded to the µs; (None, None) without calls."""
    if sketch.count == 0:
        return None, None
    p50, p99 = sketch.quantiles((0.5, 0.99))
    return round(p50, 3), round(p99, 3)


def with_latency(pairs: list[dict[str, Any]], buckets: Mapping[Key, Buckets]) -> tuple[list[dict[str, Any]],
                                                                                      list[dict[str, Any]]]:
    """(pairs, callees): each pair row ({caller, callee, side, calls, errors, timeouts}) with its p50 and
    p99 from its buckets, and per (callee, side) the pairs' sums with the quantiles of their summed
    buckets (caller ''). A pair without buckets (calls loaded before migration 0011) has None."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    sketches: dict[tuple[str, str], DDSketch] = {}
    for pair in pairs:
        key = (pair["callee"], pair["side"])
        counts = buckets.get((pair["caller"], pair["callee"], pair["side"]), {})
        pair["p50"], pair["p99"] = quantiles_ms(sketch_of(counts.items()))
        sketches[key] = sketch_of(counts.items(), sketches.get(key))
        total = totals.setdefault(key, {"caller": "", "callee": key[0], "side": key[1], "calls": 0, "errors": 0,
                                        "timeouts": 0})
        for name in ("calls", "errors", "timeouts"):
            total[name] += pair[name]
    for key, total in totals.items():
        total["p50"], total["p99"] = quantiles_ms(sketches[key])
    return pairs, list(totals.values())
