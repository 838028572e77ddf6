"""Gray-release guard (pure): is the canary version doing worse than the rest of the service?

The canary aborts (back to 0%) when, over the same window, its error rate exceeds the baseline's by
more than `error_margin` (absolute: 0.02 = 2 points) or its p99 exceeds the baseline's by more than
`p99_margin` (relative: 0.5 = 50% slower). Both sides are call-weighted over their instances so a
quiet instance does not count as much as a busy one. Too few canary calls: no verdict yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from weights.model import InstanceWindow


@dataclass(frozen=True)
class CanaryGuard:
    error_margin: float = 0.02
    p99_margin: float = 0.5
    min_requests: int = 50


@dataclass(frozen=True)
class _Group:
    requests: int
    error_rate: float
    p99: float


def _group(windows: Sequence[InstanceWindow]) -> _Group:
    called = [w for w in windows if w.requests > 0]
    total = sum(w.requests for w in called)
    if total == 0:
        return _Group(0, 0.0, 0.0)
    failed = sum(min(w.requests, w.errors + w.timeouts) for w in called)
    p99 = sum(w.latency_ms_p99 * w.requests for w in called) / total
    return _Group(total, failed / total, p99)


def canary_verdict(windows: Sequence[InstanceWindow], canary_version: str, guard: CanaryGuard) -> str | None:
    """A reason to abort, or None while the canary holds up (or there is too little data)."""
    canary = _group([w for w in windows if w.version == canary_version])
    baseline = _group([w for w in windows if w.version != canary_version])
    if canary.requests < guard.min_requests or baseline.requests == 0:
        return None
    if canary.error_rate > baseline.error_rate + guard.error_margin:
        return (f"canary {canary_version} error rate {canary.error_rate:.1%} > baseline "
                f"{baseline.error_rate:.1%} + {guard.error_margin:.1%} over {canary.requests} calls")
    if canary.p99 > baseline.p99 * (1 + guard.p99_margin):
        return (f"canary {canary_version} p99 {canary.p99:.0f} ms > baseline {baseline.p99:.0f} ms "
                f"+ {guard.p99_margin:.0%} over {canary.requests} calls")
    return None
