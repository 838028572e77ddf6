"""The service map's edges, pure: rollup rows -> caller -> callee edges with their figures and health.

Node ids: services svc:NAME, workloads wl:NAME, endpoints no service is known at ep:ADDRESS:PORT,
callers that did not say who they are ext:unknown, and the edges left out group:others. Edges:
- calls: per (caller, callee), the caller's own measurement when it made one (it sees what the network
  and the balancer did too), else the callee's. Counts first (calls, failures, calls over a second): the
  edges are chosen from those, and only the drawn ones get their latency quantiles (build_map);
- connections (callers' TCP, client side): the remote endpoint is a service's instance when its
  address and port are one (registry or calls); the source is the service that runs in the
  connecting cgroup, the one of them that calls this target when the cgroup runs several, else the
  cgroup's workload. Connections and calls between the same two nodes make one edge.
Bounded: the `limit` edges kept are the unhealthy ones first, then the busiest; the others are summed
per target into one edge from group:others, which carries counts but no latency quantiles (targets not
kept are only counted in `omitted`).
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from api.servicemap import health
from collectors.workload import names_of

Row = Mapping[str, Any]
UNKNOWN_CALLERS, OTHERS = "ext:unknown", "group:others"
_PLAIN_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d):\d{1,5}")


@dataclass(frozen=True)
class Inputs:
    seconds: float  # the range's length: rates divide by it
    pairs: list[Row]  # api.queries.map.call_totals: counts per (caller, callee, side)
    callees: list[Row]  # ... and per (callee, side)
    instances: list[Row]  # api.queries.map.instance_totals: per pair and side, its instances and worst
    tcp: list[Row]  # api.queries.map.tcp_links
    workloads: list[Row]  # api.queries.map.cgroup_workloads
    registry: list[Row] = field(default_factory=list)  # {service, instance}
    feeds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    feed_is_current: bool = True  # the range ends now: the feed's state describes it


def endpoint(raddr: str, rport: int) -> str:
    return f"[{raddr}]:{rport}" if ":" in raddr else f"{raddr}:{rport}"


def canonical(instance: str) -> str:
    """An instance name as the collector spells an endpoint (compressed IPv6 in brackets); DNS names stay."""
    host, _, port = instance.rpartition(":")
    if _PLAIN_IPV4.fullmatch(instance):
        return instance  # already how the collector writes it (the common case: skip the parser)
    try:
        return endpoint(ipaddress.ip_address(host.strip("[]")).compressed, int(port))
    except ValueError:
        return instance


def chosen(rows: Iterable[Row], key: tuple[str, ...], prefer: str) -> dict[tuple[str, ...], Row]:
    """One row per key: the `prefer` side's when there is one."""
    found: dict[tuple[str, ...], Row] = {}
    for row in rows:
        k = tuple(row[name] for name in key)
        if k not in found or (row["side"] == prefer and found[k]["side"] != prefer):
            found[k] = row
    return found


def call_edge(caller: str, callee: str) -> tuple[str, str]:
    """The (source, target) node ids of the calls from `caller` ('' when unnamed) to `callee`."""
    return (f"svc:{caller}" if caller else UNKNOWN_CALLERS, f"svc:{callee}")


def measured_pairs(pairs: Iterable[Row]) -> dict[str, tuple[str, str, str]]:
    """Edge id -> the (caller, callee, side) whose calls the edge shows (the caller's side when measured)."""
    return {"->".join(call_edge(caller, callee)): (caller, callee, row["side"])
            for (caller, callee), row in chosen(pairs, ("caller", "callee"), "client").items()}


def _empty(source: str, target: str) -> dict[str, Any]:
    return {"id": f"{source}->{target}", "source": source, "target": target, "calls": 0, "failures": 0,
            "slow_calls": 0, "latency_ms_p50": None, "latency_ms_p99": None, "measured_by": "", "worst_instance": None,
            "tcp_attempts": 0, "tcp_failed": 0, "tcp_retransmits": 0, "tcp_resets": 0}


class _Builder:
    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.edges: dict[tuple[str, str], dict[str, Any]] = {}

    def edge(self, source: str, target: str) -> dict[str, Any]:
        key = (source, target)
        if key not in self.edges:
            self.edges[key] = _empty(source, target)
        return self.edges[key]

    def calls(self) -> None:
        pairs = chosen(self.inputs.pairs, ("caller", "callee"), "client")
        # The worst instance as judged on the side whose figures the edge shows.
        worst = {key: row["worst"] for row in self.inputs.instances
                 if (key := (row["caller"], row["callee"])) in pairs and pairs[key]["side"] == row["side"]}
        for (caller, callee), row in pairs.items():
            edge = self.edge(*call_edge(caller, callee))
            edge.update(calls=row["calls"], failures=row["errors"] + row["timeouts"], slow_calls=row["slow"],
                        measured_by=row["side"], worst_instance=worst.get((caller, callee)))

    def connections(self) -> None:
        owners = self._owners()
        services: dict[str, set[str]] = defaultdict(set)
        named: dict[str, tuple[int, str]] = {}
        for row in self.inputs.workloads:
            if row["service"]:
                services[row["cgroup"]].add(row["service"])
            if row["events"] > named.get(row["cgroup"], (-1, ""))[0]:
                named[row["cgroup"]] = (row["events"], row["workload"])
        calls_to: dict[str, set[str]] = defaultdict(set)
        for row in self.inputs.pairs:
            calls_to[row["caller"]].add(row["callee"])
        # Thousands of (cgroup, endpoint) rows make a few edges: name each source once per (cgroup,
        # target) and sum per edge before touching the edges.
        sources: dict[tuple[str, str | None], str] = {}
        totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for row in self.inputs.tcp:
            address = endpoint(row["raddr"], row["rport"])
            target_service = owners.get(address)
            source = sources.get((row["cgroup"], target_service))
            if source is None:
                source = sources[row["cgroup"], target_service] = self._connection_source(
                    row["cgroup"], services[row["cgroup"]], target_service, calls_to,
                    named.get(row["cgroup"], (0, ""))[1])
            total = totals[source, f"svc:{target_service}" if target_service else f"ep:{address}"]
            total[0] += row["attempts"]
            total[1] += row["attempts"] - row["ok"]
            total[2] += row["retransmits"]
            total[3] += row["resets"]
        for (source, target), (attempts, failed, retransmits, resets) in totals.items():
            edge = self.edge(source, target)
            edge.update(tcp_attempts=attempts, tcp_failed=failed, tcp_retransmits=retransmits, tcp_resets=resets)

    def _owners(self) -> dict[str, str]:
        """Endpoint (as the collector spells it) -> the service it is an instance of (registry or calls)."""
        seen = {(r["instance"], r["service"]) for r in self.inputs.registry if r["instance"]}
        seen |= {(instance, r["callee"]) for r in self.inputs.instances for instance in r["instances"] if instance}
        return {canonical(instance): service for instance, service in sorted(seen)}

    @staticmethod
    def _connection_source(cgroup: str, services: set[str], target: str | None, calls_to: Mapping[str, set[str]],
                           workload: str) -> str:
        callers = sorted(s for s in services if target in calls_to.get(s, ()))
        if len(callers) == 1:
            return f"svc:{callers[0]}"
        if len(services) == 1:
            return f"svc:{next(iter(services))}"
        return f"wl:{workload or names_of(cgroup)[0] or 'unknown'}"

    def finished(self) -> list[dict[str, Any]]:
        return [finish(edge, self.inputs.seconds) for edge in self.edges.values()]


def build_edges(inputs: Inputs) -> list[dict[str, Any]]:
    """Every edge the rows hold, with rates and a health verdict."""
    builder = _Builder(inputs)
    builder.calls()
    builder.connections()
    return builder.finished()


def finish(edge: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The edge with its rates, health, colour and why (from its counts)."""
    edge["rps"] = round(edge["calls"] / seconds, 3)
    edge["error_rate"] = round(edge["failures"] / edge["calls"], 5) if edge["calls"] else None
    edge["tcp_rate"] = round(edge["tcp_attempts"] / seconds, 3)
    edge["tcp_failure_rate"] = round(edge["tcp_failed"] / edge["tcp_attempts"], 5) if edge["tcp_attempts"] else None
    verdict = health.judge(edge)
    edge.update(health=verdict.health, color=verdict.color, why=list(verdict.why),
                protocols=[p for p, n in (("rpc", edge["calls"]), ("tcp", edge["tcp_attempts"])) if n])
    return edge


def _rank(edge: Mapping[str, Any]) -> tuple[int, float, str]:
    return (-health.SEVERITY[edge["health"]], -(edge["rps"] + edge["tcp_rate"]), edge["id"])


def bounded(edges: list[dict[str, Any]], limit: int, seconds: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The `limit` edges to show (unhealthy first, then the busiest), plus one group:others edge per kept
    target summing the rest; what still does not fit is counted in the second value."""
    ranked = sorted(edges, key=_rank)
    kept, dropped = ranked[:limit], ranked[limit:]
    kept_nodes = {node for edge in kept for node in (edge["source"], edge["target"])}
    grouped: dict[str, dict[str, Any]] = {}
    omitted = {"edges": 0, "rps": 0.0, "tcp_rate": 0.0}
    for edge in dropped:
        if edge["target"] not in kept_nodes:
            omitted["edges"] += 1
            omitted["rps"] = round(omitted["rps"] + edge["rps"], 3)
            omitted["tcp_rate"] = round(omitted["tcp_rate"] + edge["tcp_rate"], 3)
            continue
        into = grouped.get(edge["target"])
        if into is None:
            into = grouped[edge["target"]] = {**_empty(OTHERS, edge["target"]), "grouped_edges": 0}
        into["grouped_edges"] += 1
        for name in ("calls", "failures", "slow_calls", "tcp_attempts", "tcp_failed", "tcp_retransmits",
                     "tcp_resets"):
            into[name] += edge[name]
    return kept + [finish(edge, seconds) for edge in grouped.values()], omitted
