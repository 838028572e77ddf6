"""Alarm rules on crafted per-minute series: each kind fires once and resolves once (api/alarms/rules.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from api.alarms.rules import DAY_S, RuleSpec, State, evaluate

T0 = 1_764_000_000 // 60 * 60  # a minute start
TODAY = [T0 + 60 * i for i in range(10)]


def rule(**fields: Any) -> RuleSpec:
    return RuleSpec(id="r1", metric="rps", service="svc", **fields)


def run(spec: RuleSpec, values: dict[int, float], minutes: list[int]) -> list[tuple[int, str]]:
    """Evaluate minute by minute, carrying the state; the transitions seen, with their minute."""
    state: State = "ok"
    seen = []
    for minute in minutes:
        verdict = evaluate(spec, values, minute, state)
        state = verdict.state
        if verdict.transition:
            seen.append((minute, verdict.transition))
    return seen


# Today: 100 everywhere except minutes 4-6 at 180; yesterday, the same minutes at 100.
SPIKE = {t: (180.0 if 4 <= i <= 6 else 100.0) for i, t in enumerate(TODAY)}
YESTERDAY = {t - DAY_S: 100.0 for t in TODAY}


@pytest.mark.parametrize("spec", [
    rule(kind="max", threshold=150),
    rule(kind="wave_abs", threshold=50),
    rule(kind="wave_pct", threshold=50),
], ids=["max", "wave_abs-yesterday", "wave_pct-yesterday"])
def test_a_spike_fires_once_and_resolves_once(spec: RuleSpec) -> None:
    assert run(spec, {**YESTERDAY, **SPIKE}, TODAY) == [(TODAY[4], "fired"), (TODAY[7], "resolved")]


@pytest.mark.parametrize("kind", ["wave_abs", "wave_pct"])
def test_a_spike_against_the_rolling_baseline_fires_once_and_resolves_once(kind: str) -> None:
    # One minute at 180 among 100s: against the mean of the 3 minutes before, minute 4 jumps by 80
    # (80%); minute 5 (100 against a mean of 126.7) is back within 50 (26.7, 21%).
    blip = {t: (180.0 if i == 4 else 100.0) for i, t in enumerate(TODAY)}
    spec = rule(kind=kind, threshold=50, against="baseline", baseline_minutes=3)
    assert run(spec, blip, TODAY) == [(TODAY[4], "fired"), (TODAY[5], "resolved")]


def test_min_fires_on_a_dip_and_resolves() -> None:
    dip = {t: (10.0 if i in (2, 3) else 100.0) for i, t in enumerate(TODAY)}
    assert run(rule(kind="min", threshold=50), dip, TODAY) == [(TODAY[2], "fired"), (TODAY[4], "resolved")]


def test_percent_wave_catches_a_drop_as_well_as_a_rise() -> None:
    drop = {**YESTERDAY, **{t: (40.0 if i == 5 else 100.0) for i, t in enumerate(TODAY)}}
    assert run(rule(kind="wave_pct", threshold=50), drop, TODAY) == [(TODAY[5], "fired"), (TODAY[6], "resolved")]


def test_missing_minutes_neither_fire_nor_resolve() -> None:
    spec = rule(kind="max", threshold=150)
    gappy = {t: v for t, v in SPIKE.items() if t != TODAY[7]}
    # 7 is missing: still firing there, resolved at 8.
    assert run(spec, gappy, TODAY) == [(TODAY[4], "fired"), (TODAY[8], "resolved")]


def test_waves_need_a_reference() -> None:
    spec = rule(kind="wave_abs", threshold=10)
    verdict = evaluate(spec, SPIKE, TODAY[4], "ok")  # no yesterday at all
    assert verdict.breached is None and verdict.state == "ok" and verdict.transition is None
    zero = evaluate(rule(kind="wave_pct", threshold=10), {TODAY[0] - DAY_S: 0.0, TODAY[0]: 5.0}, TODAY[0], "ok")
    assert zero.breached is None  # a percentage of nothing is not judged


def test_verdict_says_what_was_compared() -> None:
    verdict = evaluate(rule(kind="wave_pct", threshold=50), {**YESTERDAY, **SPIKE}, TODAY[4], "ok")
    assert verdict.value == 180.0 and verdict.reference == 100.0
    assert "rps of service=svc = 180.0 against yesterday 100.0" in verdict.message


def test_bad_rules_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="kind"):
        RuleSpec(id="x", metric="rps", kind="above", threshold=1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="id"):
        RuleSpec(id="no spaces", metric="rps", kind="max", threshold=1)
