"""Fleet statistics, per-instance scores and the ejection / protective-mode rules (pure).

The engine (engine.py) turns these judgements into weights and states over time. Calls are judged
here; callers' TCP connections by weights/tcp.py, combined here: an instance judged by connections
gets their score, and where calls judge it, connections with enough data may only lower the target.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from weights.model import EngineConfig, InstanceWindow
from weights.norms import success_factor, success_norm
from weights.tcp import (
    TcpFleet,
    TcpWindow,
    absolute_fleet,
    judged_by,
    tcp_ejection_reason,
    tcp_evidence,
    tcp_fleet,
    tcp_score,
)


@dataclass(frozen=True)
class Fleet:
    """What "normal" looks like this cycle, from the active instances with enough calls."""

    bar: float  # success needed to cost nothing: min(success_good, fleet median success)
    median_p50: float | None
    median_p99: float | None
    mean_success: float | None  # over instances with >= eject_min_requests, None below outlier_min_hosts
    stdev_success: float | None
    tcp: TcpFleet | None = None  # the norm of callers' connections (weights/tcp.py)


@dataclass(frozen=True)
class Score:
    """How one instance compares with the fleet; `target` is the health it deserves (0..1)."""

    calls: int
    success_factor: float
    latency_factor: float
    text: str  # human-readable evidence, e.g. "success 91.0% < bar 98.0% (x0.51); ..."
    unit: str = "calls"  # what `calls` counts: "calls", or "connections" when judged by TCP

    @property
    def target(self) -> float:
        return self.success_factor * self.latency_factor


def fleet_stats(active: Sequence[InstanceWindow], config: EngineConfig) -> Fleet:
    judged = [w for w in active if w.requests >= config.min_requests]
    volume = [_success(w) for w in active if w.requests >= config.eject_min_requests]
    bar, mean, stdev = success_norm([_success(w) for w in judged], volume, config.success_good, config)
    return Fleet(
        bar=bar,
        median_p50=statistics.median([w.latency_ms_p50 for w in judged]) if judged else None,
        median_p99=statistics.median([w.latency_ms_p99 for w in judged]) if judged else None,
        mean_success=mean,
        stdev_success=stdev,
        tcp=tcp_fleet(active, config),
    )


def score(window: InstanceWindow, fleet: Fleet, config: EngineConfig) -> Score:
    """The evidence on one instance: its calls' score, its connections' (weights/tcp.py), or the lower."""
    tcp_norm = fleet.tcp or absolute_fleet(config)
    if judged_by(window) == "tcp":
        return tcp_score(window.tcp or TcpWindow(), tcp_norm, config)
    tcp = tcp_evidence(window, config)
    tcp_part = tcp_score(tcp, tcp_norm, config) if tcp else None
    calls = rpc_score(window, fleet, config)
    if tcp_part is None or tcp_part.target >= calls.target:
        return calls
    return Score(tcp_part.calls, tcp_part.success_factor, tcp_part.latency_factor, f"{calls.text}; {tcp_part.text}",
                 tcp_part.unit)


def rpc_score(window: InstanceWindow, fleet: Fleet, config: EngineConfig) -> Score:
    """Success factor (s / bar) ** exponent times latency factor (tolerance / ratio) ** exponent."""
    success, bar = _success(window), fleet.bar
    s_factor = success_factor(success, window.requests, bar, config)  # MSEC: no significance test
    ratio = latency_ratio(window, fleet, config)
    tolerance = config.latency_tolerance
    l_factor = 1.0 if ratio <= tolerance else (tolerance / ratio) ** config.latency_exponent
    parts = [f"success {_pct(success)} over {window.requests} calls"]
    if s_factor < 1.0:
        parts[0] = f"success {_pct(success)} < bar {_pct(bar)} over {window.requests} calls (x{s_factor:.2f})"
    latency = f"p50 {window.latency_ms_p50:.0f} ms, p99 {window.latency_ms_p99:.0f} ms"
    if fleet.median_p50 is not None and fleet.median_p99 is not None:
        latency += f" ({ratio:.1f}x fleet {fleet.median_p50:.0f}/{fleet.median_p99:.0f} ms)"
    if l_factor < 1.0:
        latency += f" (x{l_factor:.2f})"
    return Score(window.requests, s_factor, l_factor, "; ".join([*parts, latency]))


def latency_ratio(window: InstanceWindow, fleet: Fleet, config: EngineConfig) -> float:
    """Geometric mean of the p50 and p99 ratios to the fleet medians (both typical and tail count)."""
    if fleet.median_p50 is None or fleet.median_p99 is None:
        return 1.0
    slack = config.latency_slack_ms
    r50 = (window.latency_ms_p50 + slack) / (fleet.median_p50 + slack)
    r99 = (window.latency_ms_p99 + slack) / (fleet.median_p99 + slack)
    return math.sqrt(r50 * r99)


def ejection_reason(window: InstanceWindow, fleet: Fleet, config: EngineConfig) -> str | None:
    """Why this instance should be ejected now (absolute floor or fleet outlier), or None; by its calls
    first, then by its connections (which may eject an instance the calls would keep)."""
    why = rpc_ejection_reason(window, fleet, config) if judged_by(window) == "rpc" else None
    tcp = tcp_evidence(window, config)
    if why is None and tcp is not None:
        why = tcp_ejection_reason(tcp, fleet.tcp or absolute_fleet(config), config)
    return why


def rpc_ejection_reason(window: InstanceWindow, fleet: Fleet, config: EngineConfig) -> str | None:
    if window.requests < config.eject_min_requests:
        return None
    success = _success(window)
    if success < config.eject_success_floor:
        floor = _pct(config.eject_success_floor)
        return f"success {_pct(success)} < floor {floor} over {window.requests} calls"
    if fleet.mean_success is None or fleet.stdev_success is None:
        return None
    spread = config.outlier_stdev_factor * fleet.stdev_success
    if success < fleet.mean_success - max(spread, config.outlier_min_gap):
        mean, stdev = _pct(fleet.mean_success), _pct(fleet.stdev_success)
        return (
            f"success {_pct(success)} < fleet mean {mean} - {config.outlier_stdev_factor} x stdev {stdev}"
            f" over {window.requests} calls"
        )
    return None


def probe_failure(window: InstanceWindow, config: EngineConfig) -> str | None:
    """Why an instance whose ejection just ran out should stay out: its probe calls still fail.

    Probed instances get ~probe_calls per window, too few for the ejection rules (eject_min_requests)
    or even a cut (min_requests); recover_min_requests of them are enough to raise a weight, so they
    are enough to refuse a return as well. With more calls the ordinary rules judge it.
    """
    calls = window.requests
    if not config.recover_min_requests <= calls < config.eject_min_requests:
        return None
    success = _success(window)
    if success >= config.eject_success_floor:
        return None
    floor = _pct(config.eject_success_floor)
    return f"probe calls still failing: success {_pct(success)} < floor {floor} over {calls} calls"


def ejection_cap(active_count: int, config: EngineConfig) -> int:
    """At most max_ejected_fraction of the active hosts, at least 1 once there are 2 hosts.

    One host is never ejected: with nowhere else to send traffic, ejecting it only adds failures.
    """
    if active_count < 2:
        return 0
    return max(1, math.floor(active_count * config.max_ejected_fraction))


def choose_ejections(
    active: Sequence[InstanceWindow],
    fleet: Fleet,
    already_ejected: int,
    exempt: Collection[str],
    config: EngineConfig,
) -> tuple[dict[str, str], dict[str, str]]:
    """Return (ejected now: instance -> reason, held back by the cap: instance -> reason).

    The worst success rates go first; `exempt` holds instances that are ejected already or pinned.
    """
    candidates = []
    for window in active:
        reason = None if window.instance in exempt else ejection_reason(window, fleet, config)
        if reason:
            candidates.append((evidence_success(window, config), window.instance, reason))
    candidates.sort()
    cap = ejection_cap(len(active), config)
    slots = max(0, cap - already_ejected)
    ejected = {name: reason for _, name, reason in candidates[:slots]}
    held = {
        name: f"{reason}; not ejected: cap of {cap} ejected reached" for _, name, reason in candidates[slots:]
    }
    return ejected, held


def own_success_factor(window: InstanceWindow, config: EngineConfig) -> float:
    """The success factor against the absolute bar (success_good) alone: what the instance's own calls
    (or connections) say, whatever the rest of the fleet does."""
    absolute = Fleet(config.success_good, None, None, None, None, absolute_fleet(config))
    return score(window, absolute, config).success_factor


def degraded_together(
    active: Sequence[InstanceWindow], ejected: Collection[str], config: EngineConfig
) -> tuple[int, int]:
    """(degraded, counted) for protective mode, judged against the ABSOLUTE bar, not the fleet's.

    Counted: instances with enough calls (or connections) plus the ones already ejected (MSEC counts
    dead ones too).
    """
    degraded = counted = 0
    for window in active:
        if window.instance in ejected:
            degraded, counted = degraded + 1, counted + 1
        elif evidence_calls(window) >= config.min_requests:
            counted += 1
            bad = evidence_success(window, config) < config.eject_success_floor
            if bad or own_success_factor(window, config) < config.protective_health:
                degraded += 1
    return degraded, counted


def evidence_calls(window: InstanceWindow) -> int:
    """Calls, or connections for an instance judged by them: how much evidence there is."""
    if judged_by(window) == "tcp":
        return window.tcp.attempts if window.tcp is not None else 0
    return window.requests


def evidence_success(window: InstanceWindow, config: EngineConfig) -> float:
    """The lower of call success and (where they may act) connect success."""
    tcp = tcp_evidence(window, config)
    tcp_rate = tcp.success_rate if tcp is not None and tcp.success_rate is not None else 1.0
    calls = _success(window) if judged_by(window) == "rpc" else 1.0
    return min(calls, tcp_rate)


def _success(window: InstanceWindow) -> float:
    rate = window.success_rate
    return 1.0 if rate is None else rate


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"
