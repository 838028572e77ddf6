"""Figures of one run, the same for the simulator and the real-time runs (docs/weights.md).

  error rate        failed calls / calls, over every caller's calls from the fault to the end
  p50, p99          the callers' latency over the same calls (a call that timed out counts its deadline)
  p99 ok            the p99 of the successful calls only: a failure is counted in the error rate, and a
                    fast failure (a refused connect, an instant 503) would otherwise pass for good latency
  time to react     seconds from the fault until the faulty instances' share of calls falls to
                    `react_share` of their share before it, and stays there for 5 s (1 s buckets)
  false ejections   times a policy took a fault-free instance out of rotation (Envoy ejection, MSEC
                    dead, gRPC not READY, svcpulse ejected), per caller; weighting down is not counted
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HOLD_S = 5  # a reaction must hold this long to count


@dataclass(frozen=True)
class Call:
    start_s: float
    caller: int
    instance: str
    ok: bool
    latency_s: float


@dataclass
class Run:
    """What one run recorded; `outs` are per-second samples (time, caller, instances out)."""

    scenario: str
    policy: str
    seed: int
    fault_at_s: float
    end_s: float
    faulty: frozenset[str]
    callers: int
    react_share: float
    calls: list[Call]
    outs: list[tuple[float, int, frozenset[str]]]


@dataclass(frozen=True)
class Figures:
    error_rate: float
    p50_ms: float
    p99_ms: float
    react_s: float | None  # None: never within the run (or no fault)
    false_ejections: float
    calls: int
    p99_ok_ms: float = 0.0  # successful calls only (0.0: none succeeded)


def figures(run: Run) -> Figures:
    measured = [c for c in run.calls if c.start_s >= run.fault_at_s]
    latencies = sorted(c.latency_s for c in measured)
    successful = sorted(c.latency_s for c in measured if c.ok)
    n = len(latencies)
    return Figures(
        error_rate=sum(not c.ok for c in measured) / max(n, 1),
        p50_ms=_quantile_ms(latencies, 0.5),
        p99_ms=_quantile_ms(latencies, 0.99),
        react_s=time_to_react(run),
        false_ejections=false_ejections(run),
        calls=n,
        p99_ok_ms=_quantile_ms(successful, 0.99),
    )


def _quantile_ms(sorted_s: Sequence[float], q: float) -> float:
    return sorted_s[int(q * (len(sorted_s) - 1))] * 1000 if sorted_s else 0.0


def faulty_shares(calls: Sequence[Call], faulty: frozenset[str], start_s: float, seconds: int) -> list[float | None]:
    """The faulty instances' share of calls started in each 1 s bucket from start_s (None: no calls)."""
    totals, hits = [0] * seconds, [0] * seconds
    for call in calls:
        bucket = int(call.start_s - start_s)
        if 0 <= bucket < seconds:
            totals[bucket] += 1
            hits[bucket] += call.instance in faulty
    return [h / t if t else None for h, t in zip(hits, totals, strict=True)]


def time_to_react(run: Run) -> float | None:
    if not run.faulty:
        return None
    before = faulty_shares(run.calls, run.faulty, run.fault_at_s - 10, 10)
    known = [s for s in before if s is not None]
    if not known:
        return None
    bar = run.react_share * sum(known) / len(known)
    after = faulty_shares(run.calls, run.faulty, run.fault_at_s, int(run.end_s - run.fault_at_s))
    for second in range(len(after) - HOLD_S + 1):
        if all(s is not None and s <= bar for s in after[second:second + HOLD_S]):
            return float(second + 1)
    return None


def false_ejections(run: Run) -> float:
    previous: dict[int, frozenset[str]] = {}
    count = 0
    for _, caller, out in run.outs:
        fresh = out - previous.get(caller, frozenset())
        count += len(fresh - run.faulty)
        previous[caller] = out
    return count / max(run.callers, 1)
