"""Weights from callers' TCP connections (weights/tcp.py through the one engine): docs/weights.md,
"Services that run no svcpulse code"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from weights import EngineResult, EngineState, InstanceWindow, compute_weights
from weights.tcp import TcpWindow, judged_by

T0 = 1_700_000_000_000
CYCLE_MS = 2_000
NAMES = [f"10.0.0.{i}:8080" for i in range(1, 5)]


def conns(attempts: int = 200, **kw: float) -> TcpWindow:
    """A healthy instance's connections over 10 s, changed by `kw`."""
    base = {"connect_ms_p50": 0.3, "connect_ms_p99": 1.2, "srtt_ms_p50": 0.4, "srtt_ms_p99": 2.0}
    return TcpWindow(attempts=attempts, **{**base, **kw})  # type: ignore[arg-type]


def fleet(odd: TcpWindow | None = None, signal: str = "tcp", names: Sequence[str] = NAMES) -> list[InstanceWindow]:
    """Instances that run no svcpulse code: no calls, only connections; names[1] gets `odd`."""
    return [InstanceWindow(n, tcp=odd if (odd and n == names[1]) else conns(), signal=signal)  # type: ignore[arg-type]
            for n in names]


def run(windows: Callable[[int], list[InstanceWindow]], cycles: int, state: EngineState | None = None,
        start_ms: int = T0) -> list[EngineResult]:
    results, state = [], state or EngineState()
    for cycle in range(cycles):
        result = compute_weights(windows(cycle), state, start_ms + cycle * CYCLE_MS)
        results.append(result)
        state = result.state
    return results


def row(result: EngineResult, name: str = NAMES[1]):  # type: ignore[no-untyped-def]
    return {i.instance: i for i in result.instances}[name]


def share(result: EngineResult, name: str = NAMES[1]) -> float:
    return row(result, name).weight / sum(i.weight for i in result.instances)


def test_a_healthy_fleet_judged_by_connections_stays_healthy_with_tcp_figures_in_the_feed() -> None:
    result = run(lambda _: fleet(), 3)[-1]
    assert {(i.state, i.weight, i.signal) for i in result.instances} == {("healthy", 100, "tcp")}
    first = row(result)
    assert (first.success_rate, first.latency_ms_p50, first.latency_ms_p99, first.rps) == (1.0, 0.3, 1.2, 20.0)
    assert first.reason.startswith("from TCP: 100.0% of 200 connections ok (no failures); "
                                   "handshake p50 0.3 ms, p99 1.2 ms")


def test_refused_connections_eject_at_once_with_figures_in_the_reason() -> None:
    warm = run(lambda _: fleet(), 2)[-1]
    result = run(lambda _: fleet(conns(150, refused=150)), 1, warm.state, T0 + 10_000)[0]
    refused = row(result)
    assert refused.state == "ejected" and share(result) <= 0.01
    assert refused.reason.startswith("from TCP: 0.0% of 150 connections ok < floor 80.0% (150 refused); "
                                     "ejected 30 s (1st time)")


def test_resets_cut_the_weight_and_are_named() -> None:
    warm = run(lambda _: fleet(), 2)[-1]
    result = run(lambda _: fleet(conns(200, resets=30)), 1, warm.state, T0 + 10_000)[0]
    reset = row(result)
    assert reset.state == "degraded" and reset.weight == 30, reset  # 85% < bar 99%: (0.85/0.99)^8 = 0.30
    assert "85.0% of 200 connections ok < bar 99.0% (30 reset) (x0.30)" in reset.reason


def test_one_reset_among_few_connections_is_chance_but_two_cut() -> None:
    warm = run(lambda _: fleet(), 2)[-1]  # 25 of 26 ok: 96.2% < bar 99%, but its 95% Wilson bound is 99.3%
    one = row(run(lambda _: fleet(conns(26, resets=1)), 1, warm.state, T0 + 10_000)[0])
    assert (one.weight, one.state) == (100, "healthy"), one
    assert "96.2% of 26 connections ok (1 reset), within chance of bar 99.0%" in one.reason
    two = row(run(lambda _: fleet(conns(26, resets=2)), 1, warm.state, T0 + 10_000)[0])  # bound 97.9% < 99%
    assert two.state == "degraded" and two.weight == 57, two  # (0.923 / 0.99) ** 8
    assert "92.3% of 26 connections ok < bar 99.0% (2 reset) (x0.57)" in two.reason
    many = row(run(lambda _: fleet(conns(100, resets=2)), 1, warm.state, T0 + 10_000)[0])  # 98% of 100: chance
    assert many.weight == 100, many


def test_loss_shows_as_retransmits_and_slow_handshakes_and_lowers_the_weight() -> None:
    warm = run(lambda _: fleet(), 2)[-1]
    lossy = conns(200, retransmits=220, connect_ms_p99=1015.0, srtt_ms_p50=0.5, srtt_ms_p99=210.0, timeouts=4)
    result = run(lambda _: fleet(lossy), 1, warm.state, T0 + 10_000)[0]
    assert row(result).state == "degraded" and row(result).weight <= 10, row(result)
    assert "1.10 retransmits/connection vs fleet 0.00" in row(result).reason
    assert all(row(result, n).weight == 100 for n in NAMES if n != NAMES[1])


def test_few_connections_keep_the_weight() -> None:
    warm = run(lambda _: fleet(), 2)[-1]
    result = run(lambda _: fleet(conns(8, refused=8)), 1, warm.state, T0 + 10_000)[0]
    assert row(result).weight == 100
    assert "8 connections < 20 needed to judge; health kept at 100%" in row(result).reason


def test_an_ejected_instance_comes_back_through_slow_start() -> None:
    warm = run(lambda _: fleet(), 2)[-1]
    down = run(lambda _: fleet(conns(100, refused=100)), 3, warm.state, T0 + 10_000)
    assert row(down[-1]).state == "ejected"
    back = run(lambda _: fleet(conns(5)), 20, down[-1].state, T0 + 41_000)  # the 30 s ejection is over
    states = [row(r).state for r in back]
    assert states[0] == "slow_start" and states[-1] == "healthy"
    weights = [row(r).weight for r in back]
    assert weights == sorted(weights) and weights[0] < 40


def test_a_fleet_refusing_together_turns_protective_and_nothing_is_ejected() -> None:
    warm = run(lambda _: fleet(), 2)[-1]
    everyone_down = [InstanceWindow(n, tcp=conns(100, refused=60), signal="tcp") for n in NAMES]
    result = run(lambda _: everyone_down, 1, warm.state, T0 + 10_000)[0]
    assert result.mode == "protective"
    assert all(i.state != "ejected" and i.weight == 100 for i in result.instances)


def test_signal_choice() -> None:
    some = conns()
    assert judged_by(InstanceWindow("a", requests=0, tcp=some)) == "tcp"  # auto, no calls
    assert judged_by(InstanceWindow("a", requests=3, tcp=some)) == "rpc"  # auto, calls exist
    assert judged_by(InstanceWindow("a", requests=0, tcp=some, signal="rpc")) == "rpc"
    assert judged_by(InstanceWindow("a", requests=500, tcp=some, signal="tcp")) == "tcp"
    assert judged_by(InstanceWindow("a")) == "rpc"  # nothing at all: "no calls" as before


def with_calls(tcp: TcpWindow, signal: str = "auto") -> list[InstanceWindow]:
    """Instrumented instances (240 good calls each); NAMES[1] also has connections `tcp`."""
    return [InstanceWindow(n, requests=240, latency_ms_p50=20, latency_ms_p99=80,
                           tcp=tcp if n == NAMES[1] else conns(), signal=signal)  # type: ignore[arg-type]
            for n in NAMES]


def test_where_calls_exist_connections_can_only_lower_the_weight() -> None:
    warm = run(lambda _: with_calls(conns()), 2)[-1]
    # The calls that get through succeed, but most connections are refused: TCP lowers the weight.
    result = run(lambda _: with_calls(conns(300, refused=200)), 1, warm.state, T0 + 10_000)[0]
    assert row(result).state == "ejected" and row(result).signal == "rpc"
    assert row(result).success_rate == 1.0  # the feed's statistics stay the calls'
    assert "success 100.0% over 240 calls" not in row(result).reason  # the ejection reason is TCP's
    assert row(result).reason.startswith("from TCP: 33.3% of 300 connections ok < floor 80.0% (200 refused)")
    # Connections better than calls never raise: a failing instance with clean connections is still cut.
    bad_calls = [replace(w, errors=120) if w.instance == NAMES[1] else w for w in with_calls(conns())]
    cut = run(lambda _: bad_calls, 1, warm.state, T0 + 10_000)[0]
    assert row(cut).state == "ejected" and "success 50.0% < floor 80.0% over 240 calls" in row(cut).reason


def test_signal_rpc_ignores_connections_and_signal_tcp_ignores_calls() -> None:
    warm = run(lambda _: with_calls(conns(), "rpc"), 2)[-1]
    result = run(lambda _: with_calls(conns(300, refused=300), "rpc"), 1, warm.state, T0 + 10_000)[0]
    assert row(result).weight == 100 and "TCP" not in row(result).reason
    warm = run(lambda _: with_calls(conns(), "tcp"), 2)[-1]
    bad_calls = [replace(w, errors=200) for w in with_calls(conns(), "tcp")]
    result = run(lambda _: bad_calls, 1, warm.state, T0 + 10_000)[0]
    assert all(i.weight == 100 and i.signal == "tcp" for i in result.instances)


def test_aborted_connections_are_the_callers_choice_not_a_failure() -> None:
    result = run(lambda _: fleet(conns(200, aborted=150)), 3)[-1]
    assert row(result).state == "healthy" and row(result).success_rate == 1.0
