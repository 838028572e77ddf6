"""The fleet's error knob fails an exact share of calls, so the demo's sick instance always looks sick."""

from __future__ import annotations

from svcpulse.fleet import Instance


def test_an_error_rate_fails_exactly_that_share_of_every_run_of_calls() -> None:
    sick = Instance("127.0.0.1:1", error_rate=0.08)
    outcomes = [sick.fails_next_call() for _ in range(1000)]
    assert sum(outcomes) == 80
    # Every prefix the map judges (20 calls on) shows at least 5% failed: its "critical" line.
    assert all(sum(outcomes[:n]) / n >= 0.05 for n in range(20, 1000))


def test_no_errors_unless_asked_and_every_call_at_one() -> None:
    assert not any(Instance("a").fails_next_call() for _ in range(100))
    assert all(Instance("b", error_rate=1.0).fails_next_call() for _ in range(3)) is True
