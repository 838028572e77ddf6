"""Tables, verdicts and the plot of the benchmark against the peers (docs/weights.md).

Each (scenario, policy) has the figures of 3 seeds; a table shows their mean with the range.
The verdict compares svcpulse (the feed with the client's "swrr-local" picker, the recommended setup) with
the best peer (lowest mean), on the error rate and on the p99. With 3 seeds a side the rule is symmetric:
  strictly better  every svcpulse seed is better than every seed of the best peer
  worse            every svcpulse seed is worse than every seed of the best peer
  as good          the ranges overlap: 3 seeds cannot tell them apart
(two policies with one distribution land on either side by chance with probability 1/20 each).
The p99 is compared only with peers that fail no more calls than svcpulse (a peer fails more when every
seed is worse and its mean is at least MORE_FAILURES x svcpulse's; if every peer fails more, with the one
that fails fewest, and then never "strictly better"): leaving calls on
a failing instance spares the others its load, so a lower p99 bought with more failed calls is a trade,
not better routing, and the perfect router (the oracle) would lose it too. Such peers are named.
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
MORE_FAILURES = 1.5  # "fails more calls" needs 1.5x the error rate: a 1% difference shifts no load worth naming
Results = Mapping[tuple[str, str], Sequence[Figures]]  # (scenario, policy) -> one Figures per seed


@dataclass(frozen=True)
class Verdict:
    metric: str
    best_peer: str
    as_good: bool
    strictly_better: bool
    traded: tuple[str, float, float] | None = None  # p99: (peer, its p99, x svcpulse's errors) with a lower p99


def _values(figures: Sequence[Figures], metric: str) -> list[float]:
    return [getattr(f, metric) for f in figures]


def compare(mine: Sequence[float], theirs: Sequence[float]) -> tuple[bool, bool]:
    """(as good, strictly better) for lower-is-better values of the seeds of each side."""
    return min(mine) <= max(theirs), max(mine) < min(theirs)


def _fails_more(mine: Sequence[float], theirs: Sequence[float]) -> bool:
    """The peer fails more calls: every seed worse than every svcpulse seed, and by MORE_FAILURES."""
    return compare(mine, theirs)[1] and statistics.fmean(theirs) >= MORE_FAILURES * statistics.fmean(mine)


def verdicts(scenario: str, results: Results) -> list[Verdict]:
    mine = results[(scenario, CONTENDER)]
    peers = {p: results[(scenario, p)] for p in PEERS if (scenario, p) in results}

    def mean(policy: str, metric: str) -> float:
        return statistics.fmean(_values(peers[policy], metric))

    my_errors = _values(mine, "error_rate")
    fewest = min(peers, key=lambda p: mean(p, "error_rate"))
    errors = Verdict("error_rate", fewest, *compare(my_errors, _values(peers[fewest], "error_rate")))
    fair = [p for p in peers if not _fails_more(my_errors, _values(peers[p], "error_rate"))]
    best = min(fair or [fewest], key=lambda p: mean(p, "p99_ms"))
    as_good, better = compare(_values(mine, "p99_ms"), _values(peers[best], "p99_ms"))
    fastest = min(peers, key=lambda p: mean(p, "p99_ms"))
    traded = None
    if fastest != best and fastest not in fair:
        times = mean(fastest, "error_rate") / max(statistics.fmean(my_errors), 1e-9)
        traded = (fastest, mean(fastest, "p99_ms"), times)
    # With no peer failing as few calls, every peer's p99 is a trade: claim no more than "as good".
    latency = Verdict("p99_ms", best, as_good, better and bool(fair), traded)
    return [errors, latency]


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
        "| policy | error rate % | p50 ms | p99 ms | p99 ok ms | time to react | false ejections |",
        "|---|---|---|---|---|---|---|",
    ]
    for policy in policies:
        figures = results[(scenario.name, policy)]
        react = _react(figures) if scenario.fault else "-"
        lines.append(
            f"| {policy} | {_cell(_values(figures, 'error_rate'), 100, 2)} | {_cell(_values(figures, 'p50_ms'), 1, 1)}"
            f" | {_cell(_values(figures, 'p99_ms'), 1, 1)} | {_cell(_values(figures, 'p99_ok_ms'), 1, 1)} | {react}"
            f" | {statistics.fmean(_values(figures, 'false_ejections')):.1f} |"
        )
    lines.append("")
    lines.append(_verdict_line(scenario.name, results))
    return "\n".join(lines)


def _traded(v: Verdict) -> str:
    if v.traded is None:
        return ""
    peer, p99, times = v.traded
    return f"; lower p99 only with more failed calls: {peer} {p99:.1f} ms at {times:.0f}x the error rate"


def _verdict_line(scenario: str, results: Results) -> str:
    parts = []
    for v in verdicts(scenario, results):
        label = "error rate" if v.metric == "error_rate" else "p99"
        word = "strictly better than" if v.strictly_better else "as good as" if v.as_good else "WORSE than"
        parts.append(f"{label}: {CONTENDER} is {word} the best peer ({v.best_peer}{_traded(v)})")
    return "Verdict: " + "; ".join(parts) + "."


def summary(scenarios: Sequence[Scenario], results: Results) -> str:
    rows = ["| scenario | error rate | p99 (against peers that fail no more calls) |", "|---|---|---|"]
    for scenario in scenarios:
        cells = []
        for v in verdicts(scenario.name, results):
            word = "better" if v.strictly_better else "as good" if v.as_good else "**worse**"
            cells.append(f"{word} (best peer: {v.best_peer}{_traded(v)})")
        rows.append(f"| {scenario.name} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def plot(scenarios: Sequence[Scenario], policies: Sequence[str], results: Results, path: Path) -> None:
    """One row per scenario: error rate, p99 and p99 of successful calls per policy, bars at the mean,
    whiskers at the range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("error_rate", 100, "error rate %"), ("p99_ms", 1, "p99 ms"), ("p99_ok_ms", 1, "p99 ok ms"))
    fig, axes = plt.subplots(len(scenarios), len(panels), figsize=(14, 2.1 * len(scenarios)), squeeze=False)
    colours = ["#999999", "#4c72b0", "#55a868", "#c44e52", "#8172b2", "#dd8452", "#da8bc3", "#e6550d", "#cccccc"]
    for row, scenario in enumerate(scenarios):
        for col, (metric, scale, label) in enumerate(panels):
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
