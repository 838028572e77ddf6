"""Rules of the weight engine (docs/weights.md), one test (or a few) per rule."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from weights import (
    DEFAULT_CONFIG,
    EngineConfig,
    EngineResult,
    EngineState,
    InstanceWindow,
    Override,
    apply_canary,
    build_feed,
    canary_weights,
    compute_weights,
)

T0 = 1_700_000_000_000
CYCLE_MS = 5_000
NAMES = [f"10.0.0.{i}:8080" for i in range(1, 6)]
NO_EJECTION = EngineConfig(eject_success_floor=0.0, outlier_min_hosts=10**6)


def win(
    name: str, requests: int = 240, errors: int = 0, p50: float = 20, p99: float = 80, **kw
) -> InstanceWindow:
    return InstanceWindow(
        name, requests=requests, errors=errors, latency_ms_p50=p50, latency_ms_p99=p99, **kw
    )


def healthy(names: Sequence[str] = NAMES) -> list[InstanceWindow]:
    return [win(n, errors=1) for n in names]


def with_one(odd: str, names: Sequence[str] = NAMES, **kw) -> list[InstanceWindow]:
    """A healthy fleet in which `odd` has the window arguments `kw`."""
    return [win(n, **kw) if n == odd else win(n, errors=1) for n in names]


def by_name(result: EngineResult) -> dict:
    return {i.instance: i for i in result.instances}


def share(result: EngineResult, name: str) -> float:
    total = sum(i.weight for i in result.instances)
    return by_name(result)[name].weight / total


def run(
    fleet: Callable[[int], list[InstanceWindow]],
    cycles: int,
    state: EngineState | None = None,
    start_ms: int = T0,
    config: EngineConfig = DEFAULT_CONFIG,
    overrides: dict[str, Override] | None = None,
) -> list[EngineResult]:
    """Step the engine every 5 s; fleet(cycle) gives that cycle's windows."""
    results = []
    state = state or EngineState()
    for cycle in range(cycles):
        result = compute_weights(fleet(cycle), state, start_ms + cycle * CYCLE_MS, config, overrides)
        results.append(result)
        state = result.state
    return results


def warm(names: Sequence[str] = NAMES) -> EngineResult:
    """A fleet that has run healthy for a while (past any slow start)."""
    return run(lambda _: healthy(names), 3)[-1]


def test_healthy_fleet_gets_static_weight_and_cold_start_does_not_ramp() -> None:
    result = run(lambda _: healthy(), 1)[0]
    assert result.mode == "normal"
    assert [(i.weight, i.state) for i in result.instances] == [(100, "healthy")] * 5
    assert "success 99.6% over 240 calls" in result.instances[0].reason


def test_normal_noise_never_ejects_or_moves_weights_much() -> None:
    rng = random.Random(42)

    def noisy(_: int) -> list[InstanceWindow]:
        out = []
        for name in NAMES:
            requests = rng.randint(200, 300)
            errors = round(requests * rng.uniform(0.002, 0.01))  # 99.0 - 99.8% success
            p50 = 20 * rng.uniform(0.85, 1.15)
            out.append(win(name, requests, errors, p50=p50, p99=p50 * 4 * rng.uniform(0.85, 1.15)))
        return out

    results = run(noisy, 500)
    assert all(r.mode == "normal" for r in results)
    weights = [i.weight for r in results for i in r.instances]
    assert not [i for r in results for i in r.instances if i.state == "ejected"]
    assert min(weights) >= 80
    assert sum(weights) / len(weights) >= 97


def test_latency_penalty_cuts_share_to_a_tenth_in_one_cycle() -> None:
    before = warm()
    slow = NAMES[0]
    after = run(lambda _: with_one(slow, p50=220, p99=280), 1, before.state, T0 + 60_000)[0]
    assert share(after, slow) <= 0.1 * share(before, slow)
    assert by_name(after)[slow].state == "degraded"
    assert "fleet 20/80 ms" in by_name(after)[slow].reason


@pytest.mark.parametrize("config", [EngineConfig(), NO_EJECTION], ids=["with-ejection", "weights-only"])
def test_half_errors_cut_share_to_a_tenth_within_two_cycles(config: EngineConfig) -> None:
    before = warm()
    bad = NAMES[2]
    after = run(lambda _: with_one(bad, errors=120), 2, before.state, T0 + 60_000, config)
    assert share(after[-1], bad) <= 0.1 * share(before, bad)


def test_absolute_floor_ejects_with_reason() -> None:
    result = run(lambda _: with_one(NAMES[0], errors=115), 1, warm().state, T0 + 60_000)[0]
    row = by_name(result)[NAMES[0]]
    assert row.state == "ejected"
    assert row.reason == (
        "success 52.1% < floor 80.0% over 240 calls; ejected 30 s (1st time)"
        "; probe share: weight 3 (~10 calls per 10 s window at the fleet's 1200)"  # issue 16: say where 3 comes from
    )


def test_outlier_relative_to_fleet_needs_enough_hosts() -> None:
    ten = [f"10.0.1.{i}:80" for i in range(10)]
    fleet = [win(n, errors=24) if n == ten[0] else win(n, errors=1 + i % 3) for i, n in enumerate(ten)]
    result = run(lambda _: fleet, 1, warm(ten).state, T0 + 60_000)[0]
    row = by_name(result)[ten[0]]
    assert row.state == "ejected"  # 90% success is above the floor but far below the fleet
    assert "< fleet mean" in row.reason
    four = run(lambda _: fleet[:4], 1, warm(ten[:4]).state, T0 + 60_000)[0]
    assert by_name(four)[ten[0]].state == "degraded"  # 4 hosts: too few to judge outliers


def test_tight_fleet_is_not_ejected_by_a_tiny_stdev() -> None:
    ten = [f"10.0.1.{i}:80" for i in range(10)]
    fleet = [win(n, requests=1000, errors=20) if n == ten[0] else win(n, requests=1000) for n in ten]
    result = run(lambda _: fleet, 1, warm(ten).state, T0 + 60_000)[0]
    assert by_name(result)[ten[0]].state != "ejected"  # 98% vs 100%: under the 5-point minimum gap


def test_ejection_backoff_grows_by_30_s_and_caps_at_300_s() -> None:
    bad = NAMES[0]
    state = warm().state
    durations = []
    now = T0 + 60_000
    while len(durations) < 12:
        result = compute_weights(with_one(bad, errors=200), state, now)
        previous = state.instances[bad]
        state = result.state
        current = state.instances[bad]
        if current.ejected_until_ms != previous.ejected_until_ms:
            durations.append((current.ejected_until_ms - now) // 1000)
        now += CYCLE_MS
    assert durations == [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]
    assert by_name(result)[bad].reason.startswith(
        "success 16.7% < floor 80.0% over 240 calls; ejected 300 s (12th"
    )


def test_past_ejections_are_forgiven_over_time() -> None:
    bad = NAMES[0]
    broken = with_one(bad, errors=200)
    state = run(lambda _: broken, 1, warm().state, T0)[0].state  # 1st ejection, 30 s
    state = compute_weights(broken, state, T0 + 30_000).state  # 2nd, 60 s, ends at T0 + 90 s
    assert state.instances[bad].ejections == 2
    later = T0 + 90_000 + 600_000  # two forgiveness periods after the last ejection ended
    result = compute_weights(broken, state, later)
    assert "ejected 30 s (1st time)" in by_name(result)[bad].reason


def test_probe_share_is_what_recovery_needs_at_most_one_percent() -> None:
    ten = [f"10.0.1.{i}:80" for i in range(10)]
    result = run(lambda _: with_one(ten[0], ten, errors=200), 1, warm(ten).state)[0]
    assert by_name(result)[ten[0]].state == "ejected"
    # 2,400 calls per window: 10 probe calls need 0.42% of the traffic, under the 1% cap
    assert by_name(result)[ten[0]].weight == 4  # round(900 x 10 / 2400)
    assert share(result, ten[0]) == pytest.approx(10 / 2400, abs=0.001)
    quiet = [win(n, requests=60, errors=60 if n == ten[0] else 1) for n in ten]  # 600 calls per window
    capped = run(lambda _: quiet, 1, warm(ten).state)[0]
    assert by_name(capped)[ten[0]].weight == 9  # would need 1.7%: capped at 1% of 900


def test_slow_start_ramp_for_a_new_instance_is_linear() -> None:
    state = warm().state
    newcomer = "10.0.0.9:8080"
    results = run(lambda _: healthy([*NAMES, newcomer]), 8, state, T0 + 60_000)
    ramp = [by_name(r)[newcomer] for r in results]
    assert [r.weight for r in ramp] == [10, 25, 40, 55, 70, 85, 100, 100]
    assert [r.state for r in ramp] == ["new"] * 6 + ["healthy"] * 2
    assert "new instance: at 10% of a 30 s ramp" in ramp[0].reason


def test_recovery_after_ejection_is_a_slow_start() -> None:
    bad = NAMES[0]
    ejected = run(lambda _: with_one(bad, errors=200), 1, warm().state)[0]
    back = run(lambda _: healthy(), 8, ejected.state, T0 + 30_000)  # ejection ends at T0 + 30 s
    ramp = [by_name(r)[bad] for r in back]
    assert [r.state for r in ramp[:6]] == ["slow_start"] * 6
    assert [r.weight for r in ramp] == [10, 25, 40, 55, 70, 85, 100, 100]


def test_recovery_from_a_cut_is_gradual() -> None:
    slow = NAMES[0]
    cut = run(lambda _: with_one(slow, p50=220, p99=280), 1, warm().state)[0]
    assert by_name(cut)[slow].weight == 5
    back = run(lambda _: healthy(), 12, cut.state, T0 + CYCLE_MS)
    weights = [by_name(r)[slow].weight for r in back]
    assert weights == [15, 25, 35, 45, 55, 65, 75, 85, 95, 100, 100, 100]  # +10 per 5 s cycle
    assert "recovering 5% -> 15% (+2%/s)" in by_name(back[0])[slow].reason


def test_zero_weight_instance_is_probed_and_can_come_back_on_few_calls() -> None:
    bad = NAMES[0]
    dead = run(lambda _: with_one(bad, errors=200), 1, warm().state, config=NO_EJECTION)[0]
    row = by_name(dead)[bad]
    assert (row.state, row.weight) == ("degraded", 3)  # cut to 0, then given the probe: 10 of 1,200 calls
    back = compute_weights(with_one(bad, requests=8), dead.state, T0 + CYCLE_MS, NO_EJECTION)
    assert by_name(back)[bad].weight == 10  # 8 good calls are enough to raise, not to cut


def test_too_few_calls_keeps_the_previous_weight() -> None:
    bad = NAMES[0]
    result = run(lambda _: with_one(bad, requests=10, errors=10), 1, warm().state)[0]
    row = by_name(result)[bad]
    assert (row.weight, row.state) == (100, "healthy")
    assert "10 calls < 20 needed to judge; health kept at 100%" in row.reason


def test_protective_mode_when_most_degrade_together() -> None:
    sick = set(NAMES[:3])
    before = warm()
    results = run(
        lambda _: [win(n, errors=100 if n in sick else 1) for n in NAMES], 6, before.state, T0 + 60_000
    )
    assert all(r.mode == "protective" for r in results)
    assert all(i.weight == 100 and i.state != "ejected" for r in results for i in r.instances)
    reason = by_name(results[0])[NAMES[0]].reason
    assert "protective mode: 3 of 5 instances degraded together; weights not cut" in reason
    assert build_feed("shop.cart", results[0])["mode"] == "protective"


def test_two_of_five_degraded_is_normal_and_the_cap_holds_one_back() -> None:
    sick = NAMES[:2]
    errors = {sick[0]: 110, sick[1]: 100}
    result = run(lambda _: [win(n, errors=errors.get(n, 1)) for n in NAMES], 1, warm().state)[0]
    rows = by_name(result)
    assert result.mode == "normal"
    assert rows[sick[0]].state == "ejected"  # the worst one goes first
    assert rows[sick[1]].state == "degraded"
    assert "not ejected: cap of 1 ejected reached" in rows[sick[1]].reason
    assert rows[sick[1]].weight < 10


def test_a_single_instance_is_never_ejected() -> None:
    result = run(lambda _: [win(NAMES[0], errors=200)], 3)[-1]
    assert result.instances[0].state != "ejected"
    assert result.instances[0].weight >= 1


def test_drained_and_disabled_get_zero_then_slow_start_when_back() -> None:
    overrides = {NAMES[0]: Override(drained=True)}
    fleet = [*healthy(NAMES[:4]), replace(win(NAMES[4]), enabled=False)]
    result = run(lambda _: fleet, 1, warm().state, overrides=overrides)[0]
    rows = by_name(result)
    drained = rows[NAMES[0]]
    assert (drained.weight, drained.state, drained.reason) == (0, "drained", "drained by operator")
    assert (rows[NAMES[4]].weight, rows[NAMES[4]].reason) == (0, "disabled in registry")
    back = compute_weights(healthy(), result.state, T0 + CYCLE_MS)
    assert (by_name(back)[NAMES[0]].state, by_name(back)[NAMES[0]].weight) == ("slow_start", 10)


def test_pinned_weight_wins_over_the_data() -> None:
    overrides = {NAMES[0]: Override(pinned_weight=40)}
    result = run(lambda _: with_one(NAMES[0], errors=200), 2, warm().state, overrides=overrides)[-1]
    row = by_name(result)[NAMES[0]]
    assert row.weight == 40
    assert row.state == "degraded"
    assert row.reason.startswith("pinned to 40 by operator; success 16.7% < bar 98.0%")


def test_instances_that_disappear_are_forgotten() -> None:
    result = compute_weights(healthy(NAMES[:2]), warm().state, T0 + 60_000)
    assert set(result.state.instances) == set(NAMES[:2])


def test_feed_shape_and_revision_stability() -> None:
    first = build_feed("shop.cart", warm())
    assert list(first) == ["service", "revision", "generated_at_ms", "window_s", "mode", "instances"]
    row_keys = "instance weight state reason success_rate latency_ms_p50 latency_ms_p99 rps version signal"
    assert list(first["instances"][0]) == row_keys.split()
    # Different statistics, same weights and states: same revision.
    jittered = [win(n, requests=300, errors=2, p50=21) for n in NAMES]
    same = build_feed("shop.cart", compute_weights(jittered, warm().state, T0 + 60_000))
    assert same["revision"] == first["revision"]
    assert same["instances"][0]["reason"] != first["instances"][0]["reason"]
    changed = compute_weights(with_one(NAMES[0], p50=300), warm().state, T0 + 60_000)
    assert build_feed("shop.cart", changed)["revision"] != first["revision"]


def test_canary_gets_exactly_its_percent() -> None:
    weights = {"a": 100, "b": 100, "c": 50, "d": 100}
    versions = {"a": "v1", "b": "v1", "c": "v1", "d": "v2"}
    out = canary_weights(weights, versions, "v2", 5)
    assert sum(out.values()) == 350
    assert out["d"] == round(350 * 0.05)
    assert out == {"a": 133, "b": 133, "c": 66, "d": 18}  # v1 keeps its 2:2:1 proportions
    fine = canary_weights(weights, versions, "v2", 12.34, total=10_000)
    assert fine["d"] == 1234 and sum(fine.values()) == 10_000
    assert canary_weights(weights, versions, "v2", 0)["d"] == 0
    assert canary_weights(weights, versions, "v2", 100) == {"a": 0, "b": 0, "c": 0, "d": 350}
    assert canary_weights(weights, versions, "v9", 50) == weights  # no canary instances: unchanged
    with pytest.raises(ValueError):
        canary_weights(weights, versions, "v2", 101)


def test_apply_canary_leaves_ejected_and_drained_alone() -> None:
    versions = {NAMES[0]: "v2", NAMES[1]: "v2"}
    fleet = [win(n, errors=200 if n == NAMES[0] else 1, version=versions.get(n, "v1")) for n in NAMES]
    result = run(lambda _: fleet, 1, warm().state, overrides={NAMES[4]: Override(drained=True)})[0]
    feed = build_feed("shop.cart", result)
    canary = apply_canary(feed, "v2", 10)
    rows = {r["instance"]: r for r in canary["instances"]}
    assert rows[NAMES[0]]["weight"] == by_name(result)[NAMES[0]].weight  # ejected keeps its probe weight
    assert rows[NAMES[4]]["weight"] == 0
    routable = [rows[n]["weight"] for n in NAMES[1:4]]
    assert rows[NAMES[1]]["weight"] == round(0.1 * sum(routable))
    assert canary["revision"] != feed["revision"]
