"""Pickers: shares follow weights, zero weight is never picked, documented all-zero fallback."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from balancer.pickers import NoInstancesError, Picker, SmoothWeightedRoundRobin, SwrrLocalVeto, WeightedP2C

MakePicker = Callable[[dict[str, int]], Picker]
BOTH: list[MakePicker] = [SmoothWeightedRoundRobin, lambda w: WeightedP2C(w, random.Random(0))]
WEIGHTS = {"a": 50, "b": 30, "c": 15, "d": 4, "e": 1, "z": 0}


def shares(picks: list[str]) -> dict[str, float]:
    return {name: count / len(picks) for name, count in Counter(picks).items()}


def test_swrr_shares_are_exact_per_cycle_and_zero_is_never_picked() -> None:
    picker = SmoothWeightedRoundRobin(WEIGHTS)
    picks = [picker.pick() for _ in range(100 * 10)]
    assert Counter(picks) == {"a": 500, "b": 300, "c": 150, "d": 40, "e": 10}


def test_swrr_interleaves_like_nginx() -> None:
    picker = SmoothWeightedRoundRobin({"a": 5, "b": 1, "c": 1})
    assert [picker.pick() for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]


def test_swrr_update_keeps_going_without_a_burst() -> None:
    picker = SmoothWeightedRoundRobin({"a": 1, "b": 1})
    first = picker.pick()
    picker.update({"a": 1, "b": 1, "c": 0})
    assert picker.pick() != first  # the cycle continued where it was
    picker.update({"a": 0, "b": 3})
    assert {picker.pick() for _ in range(5)} == {"b"}


def test_p2c_shares_follow_weights_when_nothing_is_in_flight() -> None:
    picker = WeightedP2C(WEIGHTS, random.Random(1))
    got = shares([picker.pick() for _ in range(50_000)])
    assert "z" not in got
    for name, weight in WEIGHTS.items():
        if weight:
            assert got[name] == pytest.approx(weight / 100, abs=0.01)


def test_p2c_is_deterministic_with_a_seeded_rng() -> None:
    one = WeightedP2C(WEIGHTS, random.Random(7))
    two = WeightedP2C(WEIGHTS, random.Random(7))
    assert [one.pick() for _ in range(100)] == [two.pick() for _ in range(100)]


def test_p2c_avoids_the_busy_instance() -> None:
    picker = WeightedP2C({"a": 1, "b": 1}, random.Random(3))
    picks = Counter(picker.pick({"a": 5, "b": 0}) for _ in range(1000))
    assert picks == {"b": 1000}  # with two instances both are always drawn: the idle one wins
    three = WeightedP2C({"a": 1, "b": 1, "c": 1}, random.Random(3))
    busy = Counter(three.pick({"a": 5}) for _ in range(3000))
    assert busy["a"] == 0  # "a" can only win a draw against another busier instance
    assert busy["b"] == pytest.approx(1500, rel=0.1)


def test_p2c_load_is_relative_to_weight() -> None:
    picker = WeightedP2C({"big": 10, "small": 1}, random.Random(5))
    # 3 in flight on weight 10 is less loaded than 1 in flight on weight 1.
    assert {picker.pick({"big": 3, "small": 1}) for _ in range(200)} == {"big"}


@pytest.mark.parametrize("make", BOTH, ids=["swrr", "p2c"])
def test_all_zero_falls_back_to_equal_shares(make: MakePicker) -> None:
    picker = make({"a": 0, "b": 0})
    got = Counter(picker.pick() for _ in range(2000))
    assert set(got) == {"a", "b"}
    assert got["a"] == pytest.approx(1000, rel=0.1)


@pytest.mark.parametrize("make", BOTH, ids=["swrr", "p2c"])
def test_no_instances_raises(make: MakePicker) -> None:
    with pytest.raises(NoInstancesError):
        make({}).pick()


def test_single_instance_is_always_picked() -> None:
    assert {WeightedP2C({"only": 3}, random.Random(0)).pick({"only": 100}) for _ in range(10)} == {"only"}


def test_swrr_local_follows_the_feed_until_its_own_latency_view_vetoes_a_slow_instance() -> None:
    now = [0.0]
    picker = SwrrLocalVeto({"a": 1, "b": 1, "c": 1}, random.Random(3), clock=lambda: now[0])
    assert Counter(picker.pick() for _ in range(300)) == {"a": 100, "b": 100, "c": 100}  # nothing seen: swrr
    for name, latency in (("a", 20.0), ("b", 22.0), ("c", 200.0)):
        picker.observe(name, latency)
    picks = Counter(picker.pick() for _ in range(300))
    assert picks["c"] == 0 and picks["a"] + picks["b"] == 300  # 200 ms > 3 x 22 ms: always vetoed
    now[0] = 30.0  # three decay times later c's 200 ms has faded to 10 ms (Peak EWMA): back in turn
    picker.observe("a", 20.0)
    picker.observe("b", 22.0)
    assert Counter(picker.pick() for _ in range(300))["c"] > 50


def test_swrr_local_vetoes_a_candidate_with_calls_piling_up() -> None:
    picker = SwrrLocalVeto({"a": 1, "b": 1}, random.Random(4), clock=lambda: 0.0)
    picker.observe("a", 20.0)
    picker.observe("b", 20.0)
    assert {picker.pick({"a": 3}) for _ in range(20)} == {"b"}  # 20 x 4 > 3 x 20 x 1
    assert Counter(picker.pick({"a": 1}) for _ in range(20)) == {"a": 10, "b": 10}  # 20 x 2 is not > 3 x 20
