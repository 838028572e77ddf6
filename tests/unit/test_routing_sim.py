"""The discrete-event simulator of bench/sim: deterministic, faithful to its scenario, driving the real engine."""

from __future__ import annotations

from dataclasses import replace

from bench.scenarios import SCENARIOS, Fault, Scenario, by_name
from bench.sim.engine import simulate
from bench.sim.feed import SimFeed
from bench.sim.measure import Call, Run, false_ejections, figures, time_to_react

SHORT = {"warmup_s": 12.0, "measure_s": 18.0}


def small(name: str, **changes: object) -> Scenario:
    return replace(by_name(name), **{**SHORT, **changes})


def test_every_scenario_has_its_own_seed_and_a_unique_name() -> None:
    assert len({s.name for s in SCENARIOS}) == len({s.seed for s in SCENARIOS}) == len(SCENARIOS) == 12


def test_a_seed_gives_the_same_run_and_every_policy_the_same_arrivals() -> None:
    scenario = small("errors-50", callers=2, calls_per_s=100.0)
    first, again = simulate(scenario, "envoy p2c+outlier"), simulate(scenario, "envoy p2c+outlier")
    assert figures(first) == figures(again)
    def starts(run: Run) -> list[float]:  # calls still running at the end are not recorded
        return sorted(c.start_s for c in run.calls if c.start_s < run.end_s - 1)
    assert starts(first) == starts(simulate(scenario, "round robin"))
    assert figures(simulate(scenario, "envoy p2c+outlier", seed=7)) != figures(first)


def test_faults_do_what_the_scenario_says() -> None:
    rr = {name: simulate(small(name, callers=2, calls_per_s=150.0), "round robin")
          for name in ("errors-50", "slow-200ms", "fail-stop", "no-fault")}
    def errors_at(run: Run, instance: str) -> float:
        calls = [c for c in run.calls if c.instance == instance and c.start_s >= run.fault_at_s]
        return sum(not c.ok for c in calls) / len(calls)
    sick, fine = "10.0.0.3:8080", "10.0.0.1:8080"
    assert 0.4 < errors_at(rr["errors-50"], sick) < 0.6 and errors_at(rr["errors-50"], fine) < 0.02
    assert errors_at(rr["fail-stop"], sick) == 1.0
    slow = [c.latency_s for c in rr["slow-200ms"].calls if c.instance == sick and c.start_s >= 12]
    assert min(slow) >= 0.2
    assert figures(rr["no-fault"]).error_rate < 0.005


def test_latency_grows_with_concurrency_on_an_instance_with_half_the_cpu() -> None:
    run = simulate(small("overload", callers=4), "round robin")
    def p50(instance: str) -> float:
        latencies = sorted(c.latency_s for c in run.calls if c.instance == instance and c.start_s >= 20)
        return latencies[len(latencies) // 2]
    assert p50("10.0.0.3:8080") > 5 * p50("10.0.0.1:8080")  # 120% busy: its queue only grows


def test_the_feed_runs_the_real_engine_over_every_callers_calls() -> None:
    feed = SimFeed([f"10.0.0.{i}:8080" for i in range(1, 6)])
    for k in range(2000):  # 4 s of calls ending, 10.0.0.3 failing half
        t = k * 0.002
        name = f"10.0.0.{k % 5 + 1}:8080"
        feed.record(t, name, ok=not (name == "10.0.0.3:8080" and k % 2), timed_out=False, latency_s=0.02)
    feed.cycle(5.0)  # sees calls up to 4.0 s (1 s of pipeline lag)
    view = feed.current()
    assert view.states["10.0.0.3:8080"] == "ejected"
    assert view.weights["10.0.0.3:8080"] < 5 and view.weights["10.0.0.1:8080"] == 100
    key = view.key
    feed.cycle(7.0)
    assert feed.current().key == key  # nothing acted on changed: no new revision, no wake-up


def test_time_to_react_needs_the_share_to_stay_down_and_false_ejections_count_fresh_outs_of_healthy_hosts() -> None:
    calls = [Call(t / 10, 0, "bad" if (t < 150 and t % 5 == 0) or (t >= 150 and t % 50 == 0) else "good", True, 0.01)
             for t in range(400)]
    run = Run("x", "p", 1, 10.0, 40.0, frozenset({"bad"}), 1, 0.6, calls,
              [(11.0, 0, frozenset({"good"})), (12.0, 0, frozenset({"good"})), (13.0, 0, frozenset()),
               (14.0, 0, frozenset({"good", "bad"}))])
    assert time_to_react(run) == 6.0  # 20% share until 15 s, 2% after
    assert false_ejections(run) == 2.0  # "good" went out twice; "bad" is not a false ejection
    assert time_to_react(replace(run, faulty=frozenset())) is None


def test_fault_phases_for_flapping() -> None:
    fault = Fault((2,), error_rate=0.5, period_s=10)
    assert [fault.active(t) for t in (-1, 0, 9.9, 10, 19.9, 20)] == [False, True, True, False, False, True]


def test_the_realtime_check_states_its_tolerance() -> None:
    from bench.realtime import agree
    from bench.sim.measure import Figures

    sim = Figures(0.010, 20.0, 24.0, 5.0, 0.0, 1000)
    assert agree(Figures(0.014, 23.0, 45.0, 6.0, 0.0, 1000), sim) == []  # within 0.5 points, 5 ms + 25%, 15 ms + 50%
    assert agree(Figures(0.030, 40.0, 120.0, 6.0, 0.0, 1000), sim) == ["error rate", "p50", "p99"]
