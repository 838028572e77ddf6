"""The discrete-event simulator: callers, policies, instances and the svcpulse feed on one clock.

Deterministic for a (scenario, policy, seed): every source of chance has its own random stream
derived from the seed (arrivals and interfaces, each instance's noise, each caller's policy), so
all policies of a seed see the very same arrivals. Events: a caller's next call (Poisson), a call's
end (the policy and the feed hear of it), the feed's cycle, a per-second sample of what each
policy has taken out, and the moment a fail-stop instance's process dies (connections close).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections.abc import Callable

from bench.policies import POLICIES, SVCPULSE, Context, Policy, Result
from bench.scenarios import INTERFACES, Scenario, instance_names
from bench.sim.feed import SimFeed
from bench.sim.fleet import SimInstance
from bench.sim.measure import Call, Run

_ARRIVE, _END, _FEED, _SAMPLE, _CRASH = range(5)


def _interface_picker(rng: random.Random) -> Callable[[], str]:
    names = [name for name, _ in INTERFACES]
    bounds = list(itertools.accumulate(share for _, share in INTERFACES))
    last = len(names) - 1

    def draw() -> str:
        return names[min(bisect.bisect_right(bounds, rng.random() * bounds[-1]), last)]

    return draw


def simulate(scenario: Scenario, policy: str, seed: int | None = None) -> Run:
    seed = scenario.seed if seed is None else seed
    names = instance_names(scenario)
    instances = {n: SimInstance(n, i, scenario, random.Random(f"{seed}/instance/{i}")) for i, n in enumerate(names)}
    feed = SimFeed(names) if policy in SVCPULSE else None
    extra = {
        "reachable": lambda name, now: not instances[name].refusing(now),
        "faulty": frozenset(names[i] for i in scenario.faulty),  # only the oracle reads these two
        "fault_at": scenario.warmup_s,
    }
    policies: list[Policy] = [
        POLICIES[policy](Context(names, random.Random(f"{seed}/policy/{c}"), feed, 0.0, dict(extra)))
        for c in range(scenario.callers)
    ]
    arrivals = random.Random(f"{seed}/arrivals")
    interface = _interface_picker(arrivals)
    end_s = scenario.warmup_s + scenario.measure_s
    events: list[tuple[float, int, int, int, object]] = []
    seq = 0

    def push(t: float, kind: int, who: int = 0, what: object = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, who, what))

    for caller in range(scenario.callers):
        push(arrivals.expovariate(scenario.calls_per_s), _ARRIVE, caller)
    for second in range(1, int(end_s) + 1):
        push(float(second), _SAMPLE)
    if feed is not None:
        t = feed.interval_s
        while t < end_s:
            push(t, _FEED)
            t += feed.interval_s
    if scenario.fault and scenario.fault.refuse:
        push(scenario.warmup_s, _CRASH)

    calls: list[Call] = []
    outs: list[tuple[float, int, frozenset[str]]] = []
    while events:
        now, _, kind, who, what = heapq.heappop(events)
        if now >= end_s:
            break
        if kind == _ARRIVE:
            push(now + arrivals.expovariate(scenario.calls_per_s), _ARRIVE, who)
            called = interface()
            name = policies[who].pick(now, called)
            result = instances[name].serve(now, called)
            push(now + result.latency_s, _END, who, (now, name, result))
        elif kind == _END:
            started, name, result = what  # type: ignore[misc]
            _finish(policies[who], feed, calls, who, now, started, name, result)
        elif kind == _FEED:
            feed.cycle(now)  # type: ignore[union-attr]
        elif kind == _SAMPLE:
            outs.extend((now, c, p.out(now)) for c, p in enumerate(policies))
        else:
            for p in policies:
                for i in scenario.fault.instances:  # type: ignore[union-attr]
                    p.connection_lost(names[i], now)
    faulty = frozenset(names[i] for i in scenario.faulty)
    return Run(scenario.name, policy, seed, scenario.warmup_s, end_s, faulty, scenario.callers,
               scenario.react_share, calls, outs)


def _finish(policy: Policy, feed: SimFeed | None, calls: list[Call], caller: int, now: float,
            started: float, name: str, result: Result) -> None:
    policy.done(name, now, result)
    if feed is not None:
        feed.record(now, name, result.ok, result.timed_out, result.latency_s)
    calls.append(Call(started, caller, name, result.ok, result.latency_s))
