"""The reference policies of bench/policies keep their peers' documented behaviour (issue 16)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from bench.policies import Context, LoadReport, Result
from bench.policies.envoy import EnvoyLeastRequest
from bench.policies.envoy_outlier import OutlierConfig, OutlierDetector
from bench.policies.grpc_wrr import EndpointWeight, GrpcWrr, WrrConfig, scheduler_weights, stride_pick
from bench.policies.msec import Msec
from bench.policies.peak_ewma import DECAY_S, PeakEwma

OK, FAIL = Result(True, 0.02), Result(False, 0.02)


def hosts(n: int) -> list[str]:
    return [f"h{i}" for i in range(n)]


DEFAULTS = OutlierConfig()


def detector(n: int, config: OutlierConfig = DEFAULTS) -> OutlierDetector:
    return OutlierDetector(hosts(n), config, random.Random(0), started_s=0.0)  # first sweep at 8.4 s


def first_sweep_without(d: OutlierDetector, host: str, after: float, until: float) -> float | None:
    """Step sweep by sweep from `after`; the time of the first sweep that returned `host`."""
    while d._sweeps.next_s <= until:
        at = d._sweeps.next_s
        d.advance(at)
        if at > after and host not in d.ejected():
            return at
    return None


def test_envoy_the_fifth_consecutive_5xx_ejects_at_once_and_a_success_resets_the_count() -> None:
    d = detector(20)
    for _ in range(4):
        d.result("h1", False, 0.1)
    d.result("h1", True, 0.1)
    for _ in range(4):
        d.result("h1", False, 0.1)
    assert d.ejected() == frozenset()
    d.result("h1", False, 0.2)
    assert d.ejected() == {"h1"}


@pytest.mark.parametrize(("n", "allowed"), [(20, 2), (10, 1), (7, 0)])
def test_envoy_never_ejects_more_than_max_ejection_percent(n: int, allowed: int) -> None:
    d = detector(n)
    for host in hosts(n):
        for _ in range(5):
            d.result(host, False, 1.0)
    # (ejected + 1) / hosts must stay <= 10%: with 7 hosts not even one (always_eject_one_host is off)
    assert len(d.ejected()) == allowed
    one = detector(7, OutlierConfig(always_eject_one_host=True))
    for host in hosts(7):
        for _ in range(5):
            one.result(host, False, 1.0)
    assert len(one.ejected()) == 1


def test_envoy_success_rate_rule_needs_volume_and_ejects_below_mean_minus_1_9_stdev() -> None:
    for calls, expected in ((120, {"h3"}), (99, frozenset())):  # success_rate_request_volume is 100
        d = detector(10)
        first = d._sweeps.next_s
        for host in hosts(10):
            for k in range(calls):  # h3 fails every 10th call: 90% against 100%, never 5 in a row
                d.result(host, not (host == "h3" and k % 10 == 0), first - 1)
        d.advance(first)  # the sweep judges the interval that just ended
        assert d.ejected() == expected


def test_envoy_ejection_lasts_base_times_backoff_and_ends_at_a_sweep() -> None:
    d = detector(20)
    for _ in range(5):
        d.result("h1", False, 1.0)
    back = first_sweep_without(d, "h1", 1.0, 100.0)
    assert back is not None and 31.0 <= back < 41.0  # 30 s, returned by the first sweep after it
    for _ in range(5):  # ejected again at once: the backoff is 2 now, so 60 s
        d.result("h1", False, back + 0.5)
    again = first_sweep_without(d, "h1", back + 0.5, back + 100)
    assert again is not None and 60.0 <= again - (back + 0.5) < 70.0
    # back for more than an interval: each sweep takes one off the backoff, so 30 s again later
    first_sweep_without(d, "h1", again, again + 25)
    for _ in range(5):
        d.result("h1", False, again + 25)
    third = first_sweep_without(d, "h1", again + 25, again + 125)
    assert third is not None and 30.0 <= third - (again + 25) < 40.0


def test_envoy_failure_percentage_is_detected_but_not_enforced_by_default() -> None:
    # consecutive_5xx out of the way; 60 calls per host: under the success-rate volume (100)
    for enforcing, expected in ((0, frozenset()), (100, {"h0"})):
        d = detector(10, OutlierConfig(consecutive_5xx=10**6, enforcing_failure_percentage=enforcing))
        first = d._sweeps.next_s
        for host in hosts(10):
            for k in range(60):  # h0 fails 90%
                d.result(host, host != "h0" or k % 10 == 0, first - 1)
        d.advance(first)
        assert d.ejected() == expected


def test_envoy_least_request_prefers_fewer_active_and_skips_ejected_hosts() -> None:
    policy = EnvoyLeastRequest(Context(hosts(10), random.Random(1)))
    busy = [policy.pick(0.0, "get") for _ in range(30)]  # nothing completes: active requests pile up
    counts = Counter(busy)
    assert max(counts.values()) - min(counts[h] for h in hosts(10)) <= 3  # two choices keep them even
    for _ in range(5):
        policy.done("h4", 0.1, FAIL)
    assert "h4" in policy.out(0.1)
    picks = {policy.pick(0.2, "get") for _ in range(500)}
    assert "h4" not in picks


def test_grpc_weight_formula_blackout_and_expiration() -> None:
    config = WrrConfig()
    weight = EndpointWeight()
    weight.on_report(LoadReport(qps=100, eps=20, utilization=0.3), 0.0, config.error_utilization_penalty)
    assert weight.value == pytest.approx(100 / (0.3 + 0.2 * 1.0))
    assert weight.weight(9.9, config) == 0.0  # blackout: 10 s of reports needed
    weight.on_report(LoadReport(100, 20, 0.3), 10.0, 1.0)
    assert weight.weight(10.0, config) == pytest.approx(200)
    assert weight.weight(10.0 + 180, config) == 0.0  # expired after 3 minutes without a report
    weight.on_report(LoadReport(100, 0, 0.5), 200.0, 1.0)
    assert weight.weight(205.0, config) == 0.0  # blackout again after expiry
    assert weight.weight(210.0, config) == pytest.approx(200)
    weight.on_report(LoadReport(0, 0, 0.5), 211.0, 1.0)  # empty reports are ignored
    assert weight.value == pytest.approx(200)


def test_grpc_scheduler_uses_the_mean_for_unusable_weights_and_falls_back_to_round_robin() -> None:
    assert scheduler_weights([0, 0, 5]) is None  # fewer than two usable weights: round robin
    assert scheduler_weights([3, 3, 3]) is None
    scaled = scheduler_weights([100, 50, 0])
    assert scaled == [65535, 32768, 49151]
    picks = Counter()
    sequence = 12345
    for _ in range(6000):
        index, sequence = stride_pick(scaled, sequence)
        picks[index] += 1
    total = sum(scaled)
    for index, w in enumerate(scaled):
        assert picks[index] / 6000 == pytest.approx(w / total, abs=0.02)


def test_grpc_lost_connection_is_not_picked_until_a_reconnect_succeeds() -> None:
    down = {"h1"}
    ctx = Context(hosts(3), random.Random(2), extra={"reachable": lambda name, now: name not in down})
    policy = GrpcWrr(ctx)
    policy.connection_lost("h1", 0.0)
    assert "h1" not in {policy.pick(0.1 * k, "get") for k in range(1, 100)}
    assert policy.out(10.0) == {"h1"}
    down.clear()
    later = 10.0
    while "h1" in policy.out(later):
        later += 0.5
    # backoff 1 s x 1.6 per failed attempt (+-20% jitter): 1, 2.6, 5.2, 9.3, 15.8 ... s after the loss
    assert 10.0 <= later <= 16.0 * 1.2 + 0.5
    assert "h1" in {policy.pick(later + 0.01 * k, "get") for k in range(30)}


def test_peak_ewma_jumps_to_peaks_and_decays_with_the_documented_time() -> None:
    policy = PeakEwma(Context(hosts(2), random.Random(3)))
    metric = policy._metrics["h0"]
    metric.observe(0.2, 1.0, DECAY_S)
    assert metric.cost == 0.2  # a peak is taken at once
    assert metric.load(11.0, DECAY_S) == pytest.approx(0.2 * math.exp(-1))  # e-fold per decay time
    metric.pending = 2
    assert metric.load(11.0, DECAY_S) == pytest.approx(0.2 * math.exp(-1) * 3)
    fresh = policy._metrics["h1"]
    fresh.pending = 1
    assert fresh.load(11.0, DECAY_S) > 1e12  # no latency yet but calls pending: the penalty


def test_peak_ewma_picks_the_cheaper_of_two_distinct_nodes() -> None:
    policy = PeakEwma(Context(hosts(2), random.Random(4)))
    policy._metrics["h0"].observe(0.3, 0.0, DECAY_S)
    policy._metrics["h1"].observe(0.01, 0.0, DECAY_S)
    assert {policy.pick(0.1, "get") for _ in range(20)} == {"h1"}  # two nodes: always both compared


def test_msec_cuts_by_success_squared_counts_only_transport_failures_and_revives_at_ten() -> None:
    policy = Msec(Context(hosts(4), random.Random(5)))
    block = policy._blocks.next_s
    for _ in range(50):
        policy.done("h0", block - 1, Result(False, 0.02))  # an answered error: a success to MSEC
        policy.done("h1", block - 1, Result(False, 1.0, timed_out=True) if _ % 5 == 0 else OK)
    policy.out(block)
    assert policy.weights["h0"] == 100
    assert policy.weights["h1"] == math.floor(100 * 0.8 * 0.8)  # 64
    for _ in range(10):
        policy.done("h2", block + 1, Result(False, 0.001, reached=False))
    policy.out(block + 5)
    assert "h2" in policy.dead
    for _ in range(10):
        policy.done("h2", block + 6, OK)
    policy.out(block + 10)
    assert "h2" not in policy.dead and policy.weights["h2"] == 10
    for _ in range(10):
        policy.done("h1", block + 11, OK)
    policy.out(block + 15)
    assert policy.weights["h1"] == 69  # +5% of static per good block
