"""State and reason say what was applied and why, in every mode (issue 16, "reasons an operator can trust")."""

from __future__ import annotations

from tests.unit.test_weights_engine import NAMES, NO_EJECTION, T0, by_name, healthy, run, warm, win, with_one
from weights import EngineConfig, compute_weights


def test_protective_mode_never_labels_a_failing_instance_healthy_with_a_cut_it_did_not_apply() -> None:
    four = NAMES[:4]
    errors = {four[0]: 120, four[1]: 96, four[2]: 72}  # 50%, 60%, 70% success: the fleet bar is the median, 65%
    results = run(lambda _: [win(n, errors=errors.get(n, 1)) for n in four], 3, warm(four).state, T0 + 60_000)
    rows = by_name(results[-1])
    assert results[-1].mode == "protective"
    for name, factor in ((four[0], "x0.12"), (four[1], "x0.53")):  # below the bar: a cut asked for, not applied
        row = rows[name]
        assert (row.weight, row.state) == (100, "degraded")  # kept, and labelled by what its calls say
        assert f"({factor})" in row.reason and f"{factor} not applied, health kept at 100%" in row.reason
    at_bar = rows[four[2]]  # above the bar: nothing asked, nothing claimed, but not "healthy" at 70%
    assert (at_bar.weight, at_bar.state) == (100, "degraded") and "not applied" not in at_bar.reason
    fine = rows[four[3]]
    assert (fine.weight, fine.state) == (100, "healthy")
    assert "not applied" not in fine.reason


def test_an_instance_raised_by_a_falling_fleet_bar_is_not_shown_recovering() -> None:
    dipping = NAMES[:3]  # 3 of 5 at 93%: the median (the bar) falls to 93%, still under protective mode
    earlier = run(lambda _: with_one(NAMES[0], p50=220, p99=280), 1, warm().state, T0 + 60_000)[0]  # cut to 5%
    assert by_name(earlier)[NAMES[0]].weight < 20
    now = compute_weights([win(n, errors=17 if n in dipping else 1) for n in NAMES], earlier.state, T0 + 65_000)
    row = by_name(now)[NAMES[0]]
    assert now.mode == "normal"
    assert "recovering" not in row.reason
    assert "raised (its calls did not improve)" in row.reason
    assert "not cut" not in row.reason or "fleet bar fell" in row.reason
    assert row.state == "degraded"
    peer = by_name(now)[NAMES[1]]  # never cut: full weight, but its calls are still bad, and it says why
    assert (peer.weight, peer.state) == (100, "degraded")
    assert "not cut: the fleet bar fell to 92.9% (median success of the fleet)" in peer.reason


def test_a_weight_from_the_probe_share_is_explained() -> None:
    dead = run(lambda _: with_one(NAMES[0], errors=200), 1, warm().state, config=NO_EJECTION)[0]
    row = by_name(dead)[NAMES[0]]
    assert (row.state, row.weight) == ("degraded", 3)
    assert row.reason.endswith(
        "health cut 100% -> 0%; probe share: weight 3 (~10 calls per 10 s window at the fleet's 1200)"
    )
    quiet = [win(n, requests=20, errors=20 if n == NAMES[0] else 0) for n in NAMES]
    capped = run(lambda _: quiet, 1, warm().state, T0, NO_EJECTION)[0]
    assert "probe share: weight 4 (capped at 1% of the live weight 400)" in by_name(capped)[NAMES[0]].reason


def test_every_state_has_a_reason_that_matches_what_was_applied() -> None:
    config = EngineConfig()
    assert all(r.state == "healthy" and "cut" not in r.reason for r in warm().instances)
    ejected = by_name(run(lambda _: with_one(NAMES[0], errors=200), 1, warm().state, config=config)[0])[NAMES[0]]
    assert ejected.state == "ejected" and "ejected 30 s (1st time)" in ejected.reason
    assert f"probe share: weight {ejected.weight}" in ejected.reason
    back = run(lambda _: healthy(), 2, run(lambda _: with_one(NAMES[0], errors=200), 1, warm().state)[0].state,
               T0 + 30_000)
    ramping = by_name(back[0])[NAMES[0]]
    assert ramping.state == "slow_start" and f"at {ramping.weight}% of a 30 s ramp" in ramping.reason


def test_an_ejection_that_ends_while_the_probe_calls_still_fail_is_renewed_and_rests() -> None:
    ten = [f"10.0.1.{i}:80" for i in range(10)]
    bad = ten[0]
    first = run(lambda _: with_one(bad, ten, errors=200), 1, warm(ten).state, T0)[0]  # 1st ejection: 30 s
    assert by_name(first)[bad].state == "ejected" and by_name(first)[bad].weight > 0  # probed
    probed = with_one(bad, ten, requests=12, errors=9)  # what its probe calls show at the end: 25% success
    renewed = compute_weights(probed, first.state, T0 + 30_000)
    row = by_name(renewed)[bad]
    assert row.state == "ejected"
    assert row.reason.startswith("probe calls still failing: success 25.0% < floor 80.0% over 12 calls; "
                                 "ejected 60 s (2nd time)")
    assert row.weight == 0 and "no probe calls for 45 s" in row.reason  # rests until its last 15 s
    later = compute_weights(probed, renewed.state, T0 + 30_000 + 46_000)
    assert by_name(later)[bad].weight > 0 and "probe share" in by_name(later)[bad].reason
    fine = compute_weights(with_one(bad, ten, requests=12, errors=0), first.state, T0 + 30_000)
    assert by_name(fine)[bad].state == "slow_start"  # probe calls fine: it comes back as before
