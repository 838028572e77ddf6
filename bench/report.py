"""Tables, verdicts and the plot of the benchmark against the peers (docs/weights.md).

Each (scenario, policy) has the figures of 3 seeds; a table shows their mean with the range.
The verdict compares svcpulse (the feed with the client's "swrr-local" picker, the recommended setup) with
the best peer on each of error rate and p99:
  at least as good  the best peer's mean is not below svcpulse's best seed (within its spread)
  strictly better   every svcpulse seed is better than every seed of that best peer
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.policies import PEERS
from bench.scenarios import Scenario
from bench.sim.measure import Figures

CONTENDER = "svcpulse swrr-local"
Results = Mapping[tuple[str, str], Sequence[Figures]]  # (scenario, policy) -> one Figures per seed


@dataclass(frozen=True)
class Verdict:
    metric: str
    best_peer: str
    as_good: bool
    strictly_better: bool


def _values(figures: Sequence[Figures], metric: str) -> list[float]:
    return [getattr(f, metric) for f in figures]


def verdicts(scenario: str, results: Results) -> list[Verdict]:
    out = []
    mine = results[(scenario, CONTENDER)]
    for metric in ("error_rate", "p99_ms"):
        peers = {p: _values(results[(scenario, p)], metric) for p in PEERS if (scenario, p) in results}
        best = min(peers, key=lambda p: statistics.fmean(peers[p]))
        values = _values(mine, metric)
        out.append(Verdict(metric, best, statistics.fmean(peers[best]) >= min(values),
                           max(values) < min(peers[best])))
    return out


def _cell(values: list[float], scale: float, digits: int) -> str:
    mean = statistics.fmean(values) * scale
    low, high = min(values) * scale, max(values) * scale
    return f"{mean:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _react(figures: Sequence[Figures]) -> str:
    seconds = [f.react_s for f in figures]
    if all(s is None for s in seconds):
        return "never"
    known = [s for s in seconds if s is not None]
    text = f"{statistics.fmean(known):.0f} s"
    return text if len(known) == len(seconds) else f"{text} ({len(seconds) - len(known)} never)"


def table(scenario: Scenario, policies: Sequence[str], results: Results) -> str:
    lines = [
        f"### {scenario.name}: {scenario.title}",
        "",
        "| policy | error rate % | p50 ms | p99 ms | time to react | false ejections |",
        "|---|---|---|---|---|---|",
    ]
    for policy in policies:
        figures = results[(scenario.name, policy)]
        react = _react(figures) if scenario.fault else "-"
        lines.append(
            f"| {policy} | {_cell(_values(figures, 'error_rate'), 100, 2)} | {_cell(_values(figures, 'p50_ms'), 1, 1)}"
            f" | {_cell(_values(figures, 'p99_ms'), 1, 1)} | {react}"
            f" | {statistics.fmean(_values(figures, 'false_ejections')):.1f} |"
        )
    lines.append("")
    lines.append(_verdict_line(scenario.name, results))
    return "\n".join(lines)


def _verdict_line(scenario: str, results: Results) -> str:
    parts = []
    for v in verdicts(scenario, results):
        label = "error rate" if v.metric == "error_rate" else "p99"
        word = "strictly better than" if v.strictly_better else "as good as" if v.as_good else "WORSE than"
        parts.append(f"{label}: {CONTENDER} is {word} the best peer ({v.best_peer})")
    return "Verdict: " + "; ".join(parts) + "."


def summary(scenarios: Sequence[Scenario], results: Results) -> str:
    rows = ["| scenario | error rate | p99 |", "|---|---|---|"]
    for scenario in scenarios:
        cells = []
        for v in verdicts(scenario.name, results):
            word = "better" if v.strictly_better else "as good" if v.as_good else "**worse**"
            cells.append(f"{word} (best peer: {v.best_peer})")
        rows.append(f"| {scenario.name} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def plot(scenarios: Sequence[Scenario], policies: Sequence[str], results: Results, path: Path) -> None:
    """One row per scenario: error rate and p99 per policy, bars at the mean, whiskers at the range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scenarios), 2, figsize=(11, 2.1 * len(scenarios)), squeeze=False)
    colours = ["#999999", "#4c72b0", "#55a868", "#c44e52", "#8172b2", "#dd8452", "#da8bc3", "#e6550d", "#cccccc"]
    for row, scenario in enumerate(scenarios):
        for col, (metric, scale, label) in enumerate((("error_rate", 100, "error rate %"), ("p99_ms", 1, "p99 ms"))):
            ax = axes[row][col]
            means, lows, highs = [], [], []
            for policy in policies:
                values = [v * scale for v in _values(results[(scenario.name, policy)], metric)]
                mean = statistics.fmean(values)
                means.append(mean)
                lows.append(mean - min(values))
                highs.append(max(values) - mean)
            ax.barh(range(len(policies)), means, xerr=[lows, highs], color=colours[: len(policies)], capsize=2)
            ax.set_yticks(range(len(policies)), policies if col == 0 else [""] * len(policies), fontsize=7)
            ax.invert_yaxis()
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(f"{scenario.name}: {label}", fontsize=8, loc="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
