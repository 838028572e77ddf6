"""Capacity math on synthetic load with known answers (api/capacity.py)."""

from __future__ import annotations

import pytest

from api import capacity as cap

DAY = cap.DAY_S
NOW = 1_764_000_000 // DAY * DAY  # midnight, so daily peaks fall on whole days


def test_linear_fit_recovers_a_known_line() -> None:
    xs = [float(x) for x in range(10)]
    assert cap.linear_fit(xs, [3 + 2 * x for x in xs]) == pytest.approx((3.0, 2.0))
    assert cap.linear_fit([1.0, 1.0], [2.0, 5.0]) is None


def test_cpu_bound_is_rps_per_core_times_cores_at_the_target() -> None:
    # 100 rps on 0.5 cores = 200 rps/core; 2 cores at 70% -> 280 rps.
    load = cap.InstanceLoad("a:1", rps=100, cpu_cores=0.5, cpu_limit_cores=2.0)
    assert cap.cpu_bound(load, 0.7) == pytest.approx(280.0)
    assert cap.cpu_bound(cap.InstanceLoad("a:1", 100, 0.5, 0.0), 0.7) is None  # no limit: unknown


def minutes_with_p99(intercept: float, slope: float, loads: list[float], instances: int = 2) -> list[cap.Minute]:
    """Per-minute service load with p99 = intercept + slope * (rps per instance), exactly."""
    return [cap.Minute(t=NOW - 60 * (len(loads) - i), rps=per * instances, instances=instances,
                       p99_ms=intercept + slope * per) for i, per in enumerate(loads)]


def test_latency_bound_finds_where_the_fitted_p99_crosses_the_slo() -> None:
    # p99 = 20 ms + 0.5 ms per rps per instance; SLO 120 ms -> 200 rps per instance.
    minutes = minutes_with_p99(20, 0.5, [float(x) for x in range(100, 160, 4)])
    crossing, why = cap.latency_bound(minutes, 120)
    assert crossing == pytest.approx(200.0)
    assert "200.0 rps per instance" in why


@pytest.mark.parametrize(("minutes", "why"), [
    (minutes_with_p99(20, 0.5, [100.0] * 3), "only 3 minutes"),
    (minutes_with_p99(20, 0.5, [100.0, 101.0] * 10), "barely varied"),
    (minutes_with_p99(90, -0.1, [float(x) for x in range(100, 160, 4)]), "does not rise"),
    (minutes_with_p99(20, 0.01, [float(x) for x in range(100, 160, 4)]), "beyond twice"),
])
def test_latency_bound_refuses_what_the_data_cannot_say(minutes: list[cap.Minute], why: str) -> None:
    crossing, reason = cap.latency_bound(minutes, 120)
    assert crossing is None and why in reason


def test_daily_peaks_and_forecast_days_to_saturation() -> None:
    # Ten days; each day's peak is 100 + 10 * day rps (growth 10 rps/day); capacity 300 rps.
    # Today's fitted peak (day 10) = 200, so 300 is reached in 10 days; at a 14-day horizon, 340.
    history = [cap.Minute(NOW - (10 - d) * DAY + h * 3600, rps=(100 + 10 * d) * (1 if h == 12 else 0.5),
                          instances=2, p99_ms=10.0) for d in range(10) for h in range(24)]
    period, points = cap.peaks(history)
    assert period == "day" and len(points) == 10 and points[3] == (NOW - 7 * DAY, 130.0)
    trend = cap.forecast(points, 300.0, NOW, 14)
    assert trend["growth_rps_per_day"] == pytest.approx(10.0)
    assert trend["days_to_saturation"] == pytest.approx(10.0)
    assert trend["peak_at_horizon_rps"] == pytest.approx(340.0)
    assert cap.forecast(points, 150.0, NOW, 14)["days_to_saturation"] == 0.0


def test_short_history_uses_hourly_peaks_and_flat_load_never_saturates() -> None:
    history = [cap.Minute(NOW - 3600 * 5 + 60 * i, rps=50.0, instances=1, p99_ms=None) for i in range(300)]
    period, points = cap.peaks(history)
    assert period == "hour" and len(points) == 5
    assert cap.forecast(points, 100.0, NOW, 14)["days_to_saturation"] is None


@pytest.mark.parametrize(("running", "demand", "change", "words"), [
    (4, 410.0, 2, "scale out by 2"),  # 410 / 70 -> 6 needed
    (6, 100.0, -4, "scale in by 4"),  # 100 / 70 -> 2, also the minimum
    (2, 120.0, 0, "keep 2"),
])
def test_recommendation(running: int, demand: float, change: int, words: str) -> None:
    got, reason = cap.recommend(running, 70.0, demand, cap.Targets(min_instances=2))
    assert got == change and reason.startswith(words), reason


def test_plan_takes_the_lower_bound_and_sums_instances() -> None:
    # Two instances at 100 rps on 0.5 of 2 cores: CPU bound 280 rps each at 70%. The latency fit
    # (p99 = 20 + 0.5 x) crosses 120 ms at 200 rps per instance: the lower bound, so 400 in all.
    loads = [cap.InstanceLoad(f"10.0.0.{i}:80", 100.0, 0.5, 2.0) for i in (1, 2)]
    history = minutes_with_p99(20, 0.5, [float(x) for x in range(60, 120, 4)])
    plan = cap.plan(loads, history, NOW, cap.Targets(slo_p99_ms=120, min_instances=2))
    assert plan["capacity_rps"] == pytest.approx(400.0) and plan["rps"] == pytest.approx(200.0)
    assert plan["headroom_pct"] == pytest.approx(50.0)
    assert [i["basis"] for i in plan["instances"]] == ["latency", "latency"]
    assert plan["instances"][0]["rps_per_core"] == pytest.approx(200.0)
    assert plan["recommendation"]["change_instances"] == 0


def test_plan_without_cpu_limits_or_a_fit_says_it_cannot_recommend() -> None:
    plan = cap.plan([cap.InstanceLoad("a:1", 10.0, None, None)], [], NOW, cap.Targets())
    assert plan["capacity_rps"] is None and plan["headroom_pct"] is None
    assert plan["recommendation"]["change_instances"] == 0
    assert "no estimate" in plan["recommendation"]["reason"]
