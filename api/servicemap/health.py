"""How the service map judges an edge or a node, and the colours it paints them. Pure.

An edge's calls are judged like the console judges a service (success < 99% critical, < 99.9% warning,
p99 over a second critical), and one more way: a callee instance that fails this caller's calls often
(>= 5% critical, >= 1% warning) makes the edge critical even when the total looks fine, because a
balancer steering around a sick instance hides it in the total while some calls still fail there. TCP
connections count like calls (an attempt that did not end "ok" failed); retransmits are a warning from
one per ten connections. Rates are judged from MIN_SAMPLES calls or connections on: fewer say little.

A service node's state is the weight feed's, now: healthy, degraded (an instance degraded or ejected,
or the feed in protective mode), down (no instance may take traffic) or unknown (no feed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MIN_SAMPLES = 20
# "p99 over a second" is judged exactly from counts: more than 1% of the calls took over SLOW_MS. The
# rollups count those calls (migration 0011 fixes the threshold in SQL), so the map judges and chooses
# every edge without merging its latency digest.
SLOW_MS = 1000
SEVERITY = {"idle": 0, "healthy": 1, "warning": 2, "critical": 3}
# The console's palette (api/console/console.css), which follows Grafana's.
COLORS = {"healthy": "#56a64b", "warning": "#ff9830", "critical": "#f2495c", "idle": "#8e8e9a",
          "degraded": "#ff9830", "down": "#f2495c", "unknown": "#8e8e9a"}
_ROUTABLE = frozenset({"healthy", "new", "slow_start", "degraded"})


@dataclass(frozen=True)
class Thresholds:
    success_warning: float = 0.999
    success_critical: float = 0.99
    slow_share_critical: float = 0.01  # of calls over SLOW_MS: more means p99 over SLOW_MS
    instance_warning: float = 0.01  # one callee instance's failure rate on this edge
    instance_critical: float = 0.05
    retransmits_warning: float = 0.1  # per connection


DEFAULT = Thresholds()


@dataclass(frozen=True)
class Verdict:
    health: str  # idle, healthy, warning, critical
    why: tuple[str, ...] = ()  # what made it so, in words

    @property
    def color(self) -> str:
        return COLORS[self.health]


def _rate(kind: str, failed: int, total: int, t: Thresholds, found: list[tuple[str, str]]) -> None:
    if total < MIN_SAMPLES:
        return
    success = 1 - failed / total
    if success < t.success_critical:
        found.append(("critical", f"{kind}: {success:.1%} succeed ({failed} of {total} failed)"))
    elif success < t.success_warning:
        found.append(("warning", f"{kind}: {success:.2%} succeed ({failed} of {total} failed)"))


def judge(edge: Mapping[str, Any], t: Thresholds = DEFAULT) -> Verdict:
    """The verdict on an edge's calls ({calls, failures, slow_calls, worst_instance...}) and
    connections ({tcp_attempts, tcp_failed, tcp_retransmits})."""
    calls, attempts = edge.get("calls", 0), edge.get("tcp_attempts", 0)
    if not calls and not attempts:
        return Verdict("idle", ("no calls or connections in the range",))
    found: list[tuple[str, str]] = []
    _rate("calls", edge.get("failures", 0), calls, t, found)
    _rate("connections", edge.get("tcp_failed", 0), attempts, t, found)
    slow = edge.get("slow_calls", 0)
    if calls >= MIN_SAMPLES and slow > t.slow_share_critical * calls:
        found.append(("critical", f"p99 over {SLOW_MS / 1000:g} s: {slow / calls:.1%} of calls took longer "
                                  f"({slow} of {calls})"))
    worst = edge.get("worst_instance")
    if worst and worst["calls"] >= MIN_SAMPLES:
        rate = worst["failures"] / worst["calls"]
        if rate >= t.instance_warning:
            level = "critical" if rate >= t.instance_critical else "warning"
            found.append((level, f"instance {worst['instance']} fails {rate:.1%} of these calls "
                                 f"({worst['failures']} of {worst['calls']})"))
    if attempts >= MIN_SAMPLES and edge.get("tcp_retransmits", 0) / attempts >= t.retransmits_warning:
        found.append(("warning", f"{edge['tcp_retransmits'] / attempts:.2f} retransmits per connection"))
    if not found:
        return Verdict("healthy")
    worst_level = max((level for level, _ in found), key=SEVERITY.__getitem__)
    return Verdict(worst_level, tuple(why for _, why in found))


def feed_state(feed: Mapping[str, Any] | None) -> tuple[str, str, dict[str, int]]:
    """(state, why, instances by state) of a service from its weight feed."""
    if feed is None:
        return "unknown", "no weight feed for this service", {}
    instances = feed.get("instances") or []
    counts = dict(Counter(i["state"] for i in instances))
    sick = [i for i in instances if i["state"] in ("degraded", "ejected")]
    if not any(i["state"] in _ROUTABLE and i.get("weight", 1) > 0 for i in instances):
        why = f"no instance takes traffic ({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none'})"
        return "down", why, counts
    if sick:
        named = "; ".join(f"{i['instance']} {i['state']}: {i.get('reason') or 'no reason given'}" for i in sick[:3])
        return "degraded", f"{len(sick)} of {len(instances)} instances: {named}", counts
    if feed.get("mode") == "protective":
        return "degraded", "the feed is in protective mode (most instances fail alike)", counts
    return "healthy", f"{len(instances)} instances routable", counts
