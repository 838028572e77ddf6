"""The verdicts of the benchmark against the peers (bench/report.py): the seed rule and the latency metric."""

from __future__ import annotations

from bench.policies import PEERS
from bench.report import CONTENDER, compare, summary, verdicts
from bench.scenarios import by_name
from bench.sim.measure import Call, Figures, Run, figures


def seeds(errors: tuple[float, ...], p99: tuple[float, ...]) -> list[Figures]:
    return [Figures(e, 20.0, ms, None, 0.0, 1000, p99_ok_ms=ms) for e, ms in zip(errors, p99, strict=True)]


def results(mine: list[Figures], *peers: list[Figures]) -> dict[tuple[str, str], list[Figures]]:
    """svcpulse's seeds and the first peers' (in PEERS order); the other peers fail half their calls."""
    table = {("gray", peer): seeds((0.5, 0.5, 0.5), (900.0, 900.0, 900.0)) for peer in PEERS}
    table.update({("gray", peer): figures for peer, figures in zip(PEERS, peers, strict=False)})
    table[("gray", CONTENDER)] = mine
    return table


MINE = seeds((0.001, 0.0012, 0.0014), (53.0, 53.2, 53.4))


def test_the_seed_rule_is_symmetric_better_and_worse_need_disjoint_ranges() -> None:
    assert compare([1, 2, 3], [4, 5, 6]) == (True, True)  # every seed better: strictly better
    assert compare([1, 2, 5], [4, 5, 6]) == (True, False)  # ranges overlap: as good
    assert compare([4.5, 5.0, 7.0], [4, 5, 6]) == (True, False)  # a worse mean, but overlapping: as good
    assert compare([6.1, 7, 8], [4, 5, 6]) == (False, False)  # every seed worse: worse


def test_a_lower_p99_bought_with_more_failed_calls_is_named_not_counted() -> None:
    table = results(MINE, seeds((0.01, 0.01, 0.01), (51.0, 51.2, 51.4)),  # round robin: faster, 10x the errors
                    seeds((0.0011, 0.0012, 0.0013), (55.0, 55.5, 56.0)))  # envoy: as few errors, slower
    errors, latency = verdicts("gray", table)
    assert errors.metric == "error_rate" and errors.best_peer == PEERS[1] and errors.as_good
    assert latency.metric == "p99_ms" and latency.best_peer == PEERS[1] and latency.strictly_better
    assert latency.traded is not None and latency.traded[0] == PEERS[0] and round(latency.traded[2]) == 8
    assert "round robin 51.2 ms at 8x the error rate" in summary([by_name("gray")], table)


def test_a_peer_as_good_on_errors_and_faster_makes_svcpulse_worse() -> None:
    table = results(MINE, seeds((0.001, 0.001, 0.001), (51.0, 51.2, 51.4)))
    latency = verdicts("gray", table)[1]
    assert latency.best_peer == PEERS[0] and not latency.as_good and latency.traded is None
    assert "**worse**" in summary([by_name("gray")], table)


def test_when_every_peer_fails_more_calls_the_p99_is_never_called_strictly_better() -> None:
    table = results(MINE, seeds((0.01, 0.01, 0.01), (80.0, 80.0, 80.0)), seeds((0.02, 0.02, 0.02), (51.0, 51.0, 51.0)))
    errors, latency = verdicts("gray", table)
    assert errors.strictly_better and errors.best_peer == PEERS[0]
    assert latency.best_peer == PEERS[0] and latency.as_good and not latency.strictly_better  # 53 ms against 80 ms
    assert latency.traded is not None and latency.traded[0] == PEERS[1]


def test_fast_failures_lower_the_all_calls_p99_but_not_the_p99_of_successful_calls() -> None:
    served = [Call(i / 10, 0, "a", True, (20 + i / 10) / 1000) for i in range(900)]  # 20.0 .. 109.9 ms
    refused = [Call(i / 10, 0, "b", False, 0.001) for i in range(100)]  # 10% refused in 1 ms
    measured = figures(Run("fail-stop", "round robin", 1, 0.0, 90.0, frozenset({"b"}), 1, 0.5, served + refused, []))
    assert round(measured.p99_ok_ms, 1) == 109.0  # the 99th percentile of what was served
    assert round(measured.p99_ms, 1) == 108.9 and measured.error_rate == 0.1  # failures pull the all-calls p99 down


def test_a_few_percent_more_failures_do_not_excuse_a_peers_lower_p99() -> None:
    # Every round robin seed fails more calls, but only 1.1x as many: no load shift worth the name.
    table = results(MINE, seeds((0.0015, 0.0013, 0.0014), (51.0, 51.2, 51.4)))
    table[("gray", CONTENDER)] = seeds((0.0012, 0.0012, 0.0012), (53.0, 53.2, 53.4))
    latency = verdicts("gray", table)[1]
    assert latency.best_peer == PEERS[0] and not latency.as_good and latency.traded is None
