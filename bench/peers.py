"""Every policy x scenario x 3 seeds in the simulator, in worker processes; tables and plot out.

    .venv/bin/python bench/controlloop.py --peers [--scenarios a,b] [--workers N]

Writes artifacts/routing-peers.md (the tables), artifacts/routing-peers.png (the plot) and
artifacts/routing-peers.json (every seed's figures) and prints the tables.
The simulator is deterministic: the same seeds give the same figures.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from bench import report
from bench.policies import POLICIES
from bench.scenarios import SCENARIOS, SEED_OFFSETS, Scenario, by_name
from bench.sim.engine import simulate
from bench.sim.measure import Figures, figures

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _one(job: tuple[str, str, int]) -> tuple[str, str, int, Figures, float]:
    scenario, policy, seed = job
    started = time.perf_counter()
    result = figures(simulate(by_name(scenario), policy, seed))
    return scenario, policy, seed, result, time.perf_counter() - started


def run_matrix(scenarios: Sequence[Scenario], policies: Sequence[str], workers: int) -> report.Results:
    jobs = [(s.name, p, s.seed + offset) for s in scenarios for p in policies for offset in SEED_OFFSETS]
    results: dict[tuple[str, str], list[tuple[int, Figures]]] = defaultdict(list)
    started = time.monotonic()
    print(f"[peers] {len(jobs)} simulated runs ({len(scenarios)} scenarios x {len(policies)} policies x "
          f"{len(SEED_OFFSETS)} seeds) on {workers} worker processes", flush=True)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for done, (scenario, policy, seed, result, _) in enumerate(pool.imap_unordered(_one, jobs), 1):
            results[(scenario, policy)].append((seed, result))
            if done % 20 == 0 or done == len(jobs):
                print(f"[peers] {done}/{len(jobs)} runs, {time.monotonic() - started:.0f} s", flush=True)
    return {key: [f for _, f in sorted(runs)] for key, runs in results.items()}


def main(scenario_names: str | None, workers: int | None) -> None:
    scenarios = [by_name(n) for n in scenario_names.split(",")] if scenario_names else list(SCENARIOS)
    policies = list(POLICIES)
    workers = workers or os.cpu_count() or 1
    started = time.monotonic()
    results = run_matrix(scenarios, policies, workers)
    elapsed = time.monotonic() - started
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    tables = "\n\n".join(report.table(s, policies, results) for s in scenarios)
    header = (f"Simulated: {len(scenarios)} scenarios x {len(policies)} policies x {len(SEED_OFFSETS)} seeds in "
              f"{elapsed:.0f} s on {workers} process{'es' if workers > 1 else ''} (load average {load}). "
              "Cells: mean (min-max over seeds).")
    text = f"{header}\n\n{report.summary(scenarios, results)}\n\n{tables}\n"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "routing-peers.md").write_text(text)
    raw = {f"{s} / {p}": [dataclasses.asdict(f) for f in runs] for (s, p), runs in results.items()}
    (ARTIFACTS / "routing-peers.json").write_text(json.dumps({"header": header, "results": raw}, indent=1))
    report.plot(scenarios, policies, results, ARTIFACTS / "routing-peers.png")
    print(text)
    print(f"[peers] tables in {ARTIFACTS / 'routing-peers.md'}, plot in {ARTIFACTS / 'routing-peers.png'}")
