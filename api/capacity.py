"""Capacity math (pure): how much load a service can take, when it runs out, and what to do about it.

Method (docs/capacity.md):
- CPU bound per instance: rps per used core x cores available x target utilisation.
- Latency bound per instance: least squares of the service's per-minute p99 against per-instance rps;
  the rps where the line crosses the p99 SLO. Only trusted with enough minutes, a real spread of load
  and a rising slope, and never extrapolated past twice the highest load seen.
- An instance can take the lower of its two bounds; the service, the sum over its instances.
- Forecast: least squares on daily peaks of rps (hourly peaks with under 3 days of history); days
  until the line reaches the capacity.
- Recommendation: instances needed for the larger of today's peak and the peak forecast at the
  horizon, never fewer than a minimum kept for redundancy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DAY_S = 86_400
MIN_FIT_POINTS = 10
MIN_SPREAD = 0.2  # the lowest and highest load of a fit must differ by 20% of the highest
MAX_EXTRAPOLATION = 2.0


@dataclass(frozen=True)
class Targets:
    cpu_utilisation: float = 0.7
    slo_p99_ms: float = 300.0
    horizon_days: float = 14.0
    min_instances: int = 2


@dataclass(frozen=True)
class InstanceLoad:
    instance: str
    rps: float
    cpu_cores: float | None  # used, mean over the window; None = no load samples for this instance
    cpu_limit_cores: float | None  # available; None or 0 = unknown (no limit)


@dataclass(frozen=True)
class Minute:
    t: int  # epoch s
    rps: float  # the service's
    instances: int  # with calls in that minute
    p99_ms: float | None


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """(intercept, slope) of the least-squares line, or None when x does not vary."""
    n = len(xs)
    if n < 2:
        return None
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    return mean_y - slope * mean_x, slope


def cpu_bound(load: InstanceLoad, target: float) -> float | None:
    if not load.cpu_cores or not load.cpu_limit_cores or load.rps <= 0:
        return None
    return load.rps / load.cpu_cores * load.cpu_limit_cores * target


def latency_bound(minutes: Sequence[Minute], slo_ms: float) -> tuple[float | None, str]:
    """Per-instance rps at which the fitted p99 reaches the SLO, and how it was (or was not) found."""
    points = [(m.rps / m.instances, m.p99_ms) for m in minutes if m.instances and m.p99_ms is not None and m.rps > 0]
    if len(points) < MIN_FIT_POINTS:
        return None, f"latency: only {len(points)} minutes with calls, need {MIN_FIT_POINTS}"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if max(xs) - min(xs) < MIN_SPREAD * max(xs):
        return None, "latency: load barely varied, so p99 against rps cannot be fitted"
    intercept, slope = linear_fit(xs, ys) or (0.0, 0.0)
    if slope <= 0:
        return None, "latency: p99 does not rise with load in the data"
    crossing = (slo_ms - intercept) / slope
    if crossing > MAX_EXTRAPOLATION * max(xs):
        return None, f"latency: p99 would reach {slo_ms:g} ms beyond twice the highest load seen"
    crossing = max(crossing, 0.0)
    return crossing, (f"latency: p99 ~= {intercept:.1f} ms + {slope:.3f} ms per rps per instance over "
                      f"{len(points)} minutes reaches {slo_ms:g} ms at {crossing:.1f} rps per instance")


def instance_capacity(load: InstanceLoad, per_instance_latency: float | None,
                      target: float) -> tuple[float | None, str]:
    """The lower of the CPU and latency bounds, and which one it was ("cpu", "latency" or "unknown")."""
    bounds = [(b, name) for b, name in ((cpu_bound(load, target), "cpu"), (per_instance_latency, "latency"))
              if b is not None]
    return min(bounds) if bounds else (None, "unknown")


def peaks(minutes: Sequence[Minute]) -> tuple[str, list[tuple[int, float]]]:
    """Daily peaks of rps ("day") with 3 days of history or more, else hourly peaks ("hour")."""
    if not minutes:
        return "hour", []
    span = minutes[-1].t - minutes[0].t
    period = DAY_S if span >= 3 * DAY_S else 3_600
    best: dict[int, float] = {}
    for m in minutes:
        key = m.t // period * period
        best[key] = max(best.get(key, 0.0), m.rps)
    return ("day" if period == DAY_S else "hour"), sorted(best.items())


def forecast(peak_points: Sequence[tuple[int, float]], capacity: float | None, now_s: int,
             horizon_days: float) -> dict[str, float | None]:
    """The trend of peaks: rps growth per day, the peak expected at the horizon, days until saturation."""
    fit = linear_fit([t for t, _ in peak_points], [v for _, v in peak_points]) if len(peak_points) >= 3 else None
    if fit is None:
        return {"growth_rps_per_day": None, "peak_at_horizon_rps": None, "days_to_saturation": None}
    intercept, slope = fit
    now_peak = intercept + slope * now_s
    days: float | None = None
    if capacity is not None and now_peak >= capacity:
        days = 0.0
    elif capacity is not None and slope > 0:
        days = (capacity - now_peak) / (slope * DAY_S)
    return {"growth_rps_per_day": round(slope * DAY_S, 3),
            "peak_at_horizon_rps": round(max(now_peak + slope * horizon_days * DAY_S, 0.0), 3),
            "days_to_saturation": None if days is None else round(days, 2)}


def recommend(instances: int, per_instance: float | None, demand_rps: float, targets: Targets) -> tuple[int, str]:
    """(change in instances: + out, - in, 0 keep) and why, in words."""
    if per_instance is None or per_instance <= 0:
        return 0, "no estimate of what one instance can take (no CPU limits or load samples, latency unfitted)"
    needed = max(targets.min_instances, math.ceil(demand_rps / per_instance))
    change = needed - instances
    basis = (f"demand {demand_rps:.1f} rps at {per_instance:.1f} rps per instance needs {needed} instance(s) "
             f"(minimum {targets.min_instances}); {instances} running")
    if change > 0:
        return change, f"scale out by {change}: {basis}"
    if change < 0:
        return change, f"scale in by {-change}: {basis}"
    return 0, f"keep {instances}: {basis}"


def _instance_row(load: InstanceLoad, capacity: float | None, basis: str) -> dict[str, object]:
    return {"instance": load.instance, "rps": round(load.rps, 3), "cpu_cores": load.cpu_cores,
            "cpu_limit_cores": load.cpu_limit_cores,
            "rps_per_core": round(load.rps / load.cpu_cores, 3) if load.cpu_cores else None,
            "capacity_rps": None if capacity is None else round(capacity, 3), "basis": basis,
            "headroom_pct": headroom(load.rps, capacity)}


def headroom(rps: float, capacity: float | None) -> float | None:
    """Share of the capacity still unused, in % (negative when over capacity)."""
    return None if not capacity else round((capacity - rps) / capacity * 100, 1)


def plan(loads: Sequence[InstanceLoad], history: Sequence[Minute], now_s: int, targets: Targets) -> dict[str, object]:
    """Everything /v1/capacity/{service} reports, from current per-instance load and per-minute history."""
    last_day = [m for m in history if m.t >= now_s - DAY_S]
    per_latency, latency_note = latency_bound(last_day, targets.slo_p99_ms)
    caps = [instance_capacity(load, per_latency, targets.cpu_utilisation) for load in loads]
    known = [c for c, _ in caps if c is not None]
    per_instance = sum(known) / len(known) if known else None
    # Instances without an estimate of their own are counted at the mean of those with one.
    capacity = None if per_instance is None else sum(per_instance if c is None else c for c, _ in caps)
    current = sum(load.rps for load in loads)
    period, peak_points = peaks(history)
    trend = forecast(peak_points, capacity, now_s, targets.horizon_days)
    demand = max(current, max((m.rps for m in last_day), default=0.0), trend["peak_at_horizon_rps"] or 0.0)
    change, reason = recommend(len(loads), per_instance, demand, targets)
    return {"rps": round(current, 3), "capacity_rps": None if capacity is None else round(capacity, 3),
            "per_instance_capacity_rps": None if per_instance is None else round(per_instance, 3),
            "headroom_pct": headroom(current, capacity), "latency_bound_rps_per_instance": per_latency,
            "latency_fit": latency_note, "forecast": {"peaks": period, "points": len(peak_points), **trend},
            "recommendation": {"change_instances": change, "reason": reason},
            "instances": [_instance_row(load, c, basis) for load, (c, basis) in zip(loads, caps, strict=True)]}
