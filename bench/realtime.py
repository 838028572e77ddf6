"""The benchmark's scenarios on real parts, to check the simulator against them (issue 16).

For each scenario in bench/scenarios.REALTIME, in its real-time variant (`realtime_variant`): the
real fleet (svcpulse/fleet.py: uvicorn instances with the ASGI interceptor, events through the sink,
Tansu, the loader, chdb, the API's weight loop and feed), callers driving real HTTP calls at Poisson
times through each policy, the fault switched on after the warm-up. The same variant then runs in
the simulator, and the figures are printed side by side with the agreement check:

  error rate  within 0.5 percentage points, or 30% of the larger one
  p50         within 5 ms + 25%   (the real calls add HTTP on a shared loopback and CPU)
  p99         within 15 ms + 50%  (the real tail is mostly this machine's scheduler)

gRPC WRR is left out here: its weights come from the backends' own ORCA load reports, and the
fleet's instances report none (their work is asleep, their CPU utilization ~0).
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import httpx

from balancer.client import WeightFeedClient, WeightSource
from bench.policies import POLICIES, Context, Result
from bench.report import CONTENDER
from bench.scenarios import INTERFACES, REALTIME, Scenario, by_name, realtime_variant
from bench.sim.engine import simulate
from bench.sim.measure import Call, Figures, Run, figures
from svcpulse.fleet import Fleet

POLICIES_REALTIME = ("round robin", "envoy p2c+outlier", "peak ewma", "msec", "svcpulse swrr", CONTENDER)


def agree(real: Figures, sim: Figures) -> list[str]:
    """The figures outside the stated tolerance (empty: the simulator agrees)."""
    misses = []
    if abs(real.error_rate - sim.error_rate) > max(0.005, 0.3 * max(real.error_rate, sim.error_rate)):
        misses.append("error rate")
    if abs(real.p50_ms - sim.p50_ms) > 5 + 0.25 * max(real.p50_ms, sim.p50_ms):
        misses.append("p50")
    if abs(real.p99_ms - sim.p99_ms) > 15 + 0.5 * max(real.p99_ms, sim.p99_ms):
        misses.append("p99")
    return misses


def _apply_fault(scenario: Scenario, fleet: Fleet) -> None:
    fault = scenario.fault
    for index, instance in enumerate(fleet.instances):
        if fault and index in fault.instances:
            instance.error_rate = max(scenario.noise_errors, fault.error_rate)
            instance.extra_ms = fault.extra_ms


async def _drive(scenario: Scenario, policy: str, fleet: Fleet, feed: WeightSource | None, seed: int) -> Run:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    names = fleet.addresses
    policies = [POLICIES[policy](Context(names, random.Random(f"{seed}/policy/{c}"), feed, 0.0, {}))
                for c in range(scenario.callers)]
    calls: list[Call] = []
    outs: list[tuple[float, int, frozenset[str]]] = []
    end = scenario.warmup_s + scenario.measure_s
    rng = random.Random(f"{seed}/arrivals")
    interfaces = [name for name, _ in INTERFACES]
    weights = [share for _, share in INTERFACES]
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=scenario.timeout_s, limits=limits) as http:

        async def call(caller: int) -> None:
            started = loop.time() - t0
            name = policies[caller].pick(started, rng.choices(interfaces, weights)[0])
            try:
                ok, reached = (await http.get(f"http://{name}/work")).status_code < 500, True
            except httpx.ConnectError:
                ok, reached = False, False
            except httpx.HTTPError:
                ok, reached = False, True
            now = loop.time() - t0
            policies[caller].done(name, now, Result(ok, now - started, reached=reached))
            calls.append(Call(started, caller, name, ok, now - started))

        async def caller_loop(caller: int) -> None:
            pending = set()
            next_at = 0.0  # absolute arrival times: a late wake-up must not lower the rate
            while next_at < end:
                next_at += rng.expovariate(scenario.calls_per_s)
                await asyncio.sleep(max(0.0, t0 + next_at - loop.time()))
                task = asyncio.ensure_future(call(caller))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)

        async def sampler() -> None:
            for second in range(1, int(end) + 1):
                await asyncio.sleep(max(0.0, t0 + second - loop.time()))
                outs.extend((float(second), c, p.out(float(second))) for c, p in enumerate(policies))
                if second == int(scenario.warmup_s):
                    _apply_fault(scenario, fleet)

        await asyncio.gather(sampler(), *(caller_loop(c) for c in range(scenario.callers)))
    faulty = frozenset(names[i] for i in scenario.faulty)
    return Run(scenario.name, policy, seed, scenario.warmup_s, end, faulty, scenario.callers,
               scenario.react_share, calls, outs)


def run_real(scenario: Scenario, policy: str, bootstrap: str, feed_url: str | None, seed: int) -> Figures:
    service = f"bench.rt{seed % 1000}.{policy.replace(' ', '').replace('+', '')}"[:60]
    with Fleet(service, bootstrap, size=scenario.instances) as fleet:
        for instance in fleet.instances:
            instance.base_ms, instance.error_rate = scenario.wait_ms, scenario.noise_errors
        feed = None
        if policy.startswith("svcpulse"):
            feed = WeightFeedClient(feed_url or "", service, wait_s=5, fallback=fleet.addresses).start()
        try:
            return figures(asyncio.run(_drive(scenario, policy, fleet, feed, seed)))
        finally:
            if feed is not None:
                feed.close()


def _line(label: str, f: Figures) -> str:
    react = "never" if f.react_s is None else f"{f.react_s:.0f} s"
    return (f"{label:<6} error rate {f.error_rate:6.2%}  p50 {f.p50_ms:6.1f} ms  p99 {f.p99_ms:6.1f} ms  "
            f"react {react:>6}  false ejections {f.false_ejections:.1f}  ({f.calls} calls)")


def main(scenario_names: str | None) -> None:
    from bench.controlloop import with_api

    names = scenario_names.split(",") if scenario_names else list(REALTIME)
    scenarios = [realtime_variant(by_name(n)) for n in names]
    print(f"[realtime] {len(scenarios)} scenarios x {len(POLICIES_REALTIME)} policies on the real fleet, then "
          f"the same in the simulator (load average {', '.join(f'{x:.1f}' for x in os.getloadavg())})", flush=True)
    verdicts: list[str] = []

    def body(bootstrap: str, feed_url: str) -> None:
        for scenario in scenarios:
            print(f"\n## {scenario.name}: {scenario.title} ({scenario.instances} instances, {scenario.callers} "
                  f"callers x {scenario.calls_per_s:g}/s, fault at {scenario.warmup_s:g} s, "
                  f"{scenario.measure_s:g} s measured)", flush=True)
            for policy in POLICIES_REALTIME:
                started = time.monotonic()
                real = run_real(scenario, policy, bootstrap, feed_url, scenario.seed)
                sim = figures(simulate(scenario, policy))
                misses = agree(real, sim)
                verdict = "agree" if not misses else f"DIFFER on {', '.join(misses)}"
                print(f"{policy} ({time.monotonic() - started:.0f} s): {verdict}\n  {_line('real', real)}\n"
                      f"  {_line('sim', sim)}", flush=True)
                verdicts.append(f"{scenario.name} / {policy}: {verdict}")

    with_api(body)
    agreed = sum(v.endswith("agree") for v in verdicts)
    print(f"\n[realtime] the simulator agrees with real parts in {agreed} of {len(verdicts)} runs "
          f"(load average {', '.join(f'{x:.1f}' for x in os.getloadavg())})")
    for v in verdicts:
        print(f"  {v}")

