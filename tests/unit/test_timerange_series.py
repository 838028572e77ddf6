"""Query windows and their limits, and rows -> series/flat rows (api/timerange.py, api/series.py)."""

from __future__ import annotations

import re

import pytest

from api.series import build_series, summary, to_rows
from api.timerange import MAX_POINTS, RangeError, Window, auto_step, last_minutes, resolve, span

NOW = 1_764_000_123_456


def test_defaults_are_the_last_hour_at_an_auto_step_reading_the_rollup() -> None:
    window = resolve(None, None, None, NOW)
    assert window.step_s == 60 and window.uses_rollup
    assert window.to_s == 1_764_000_124 and window.from_s == (NOW // 1000 - 3600) // 60 * 60


def test_auto_step_keeps_about_500_points() -> None:
    assert auto_step(3600) == 60 and auto_step(86_400) == 300 and auto_step(31 * 86_400) == 7_200


@pytest.mark.parametrize(("args", "words"), [
    ((2000, 1000, 60), "from (2000) must be before to (1000)"),
    ((0, 32 * 86_400_000, 3600), "range of 32.0 days is longer than the limit of 31 days"),
    ((0, 86_400_000, 5), f"17280 points per series, more than {MAX_POINTS}; use step >= 8 s"),
    # 2163: 18.16 wraps DateTime past 2106 around to 1970, so this would have returned today's calls
    ((6_237_000_000_000, 6_237_003_600_000, 60), "from/to after 4294967295000 (2106-02-07 06:28:15 UTC)"),
    ((4_294_967_000_000, 4_294_967_296_000, 60), "from/to after 4294967295000"),
])
def test_limits_say_what_to_change(args: tuple[int, int, int], words: str) -> None:
    with pytest.raises(RangeError, match=re.escape(words)):
        resolve(*args, now_ms=NOW)


def test_fine_steps_read_raw_and_spans_cover_whole_minutes() -> None:
    assert not resolve(0, 60_000, 10, NOW).uses_rollup
    assert span(61_000, 119_000, NOW) == Window(60, 120, 60)
    assert last_minutes(NOW, 300) == Window(1_764_000_120 - 240, 1_764_000_180, 60)


ROWS = [{"t": 0, "k": "a", "calls": 60, "errors": 3, "timeouts": 3, "p50": 1.0, "p95": 2.0, "p99": 3.0},
        {"t": 120, "k": "a", "calls": 30, "errors": 0, "timeouts": 0, "p50": 1.0, "p95": 2.0, "p99": 4.0},
        {"t": 0, "k": "b", "calls": 6, "errors": 0, "timeouts": 0, "p50": 1.0, "p95": 2.0, "p99": 9.0}]


def test_counts_fill_empty_buckets_with_zero_and_ratios_leave_gaps() -> None:
    window = Window(0, 180, 60)
    rps = build_series(ROWS, ("k",), "rps", window, 10)
    assert rps == [{"labels": {"k": "a"}, "points": [[0, 1.0], [60_000, 0.0], [120_000, 0.5]]},
                   {"labels": {"k": "b"}, "points": [[0, 0.1], [60_000, 0.0], [120_000, 0.0]]}]
    success = build_series(ROWS, ("k",), "success_rate", window, 1)  # busiest series only
    assert success == [{"labels": {"k": "a"}, "points": [[0, 0.9], [120_000, 1.0]]}]
    assert to_rows(success, "success_rate")[0] == {"time": 0, "series": "k=a", "value": 0.9}
    assert to_rows(build_series(ROWS[:1], (), "latency_p99", window, 1), "latency_p99") == [
        {"time": 0, "series": "latency_p99", "value": 3.0}]


def test_summary_without_calls_is_zero_rps_and_no_ratios() -> None:
    assert summary(None, 300) == {"calls": 0, "rps": 0.0, "success_rate": None, "latency_ms_p50": None,
                                  "latency_ms_p95": None, "latency_ms_p99": None}
