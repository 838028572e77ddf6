"""The service map's nodes, pure: the ends of the kept edges (and services with a feed but no edge, as
room allows), each with its figures over the range and its state.

A service's figures are its callees' side of the story: calls it served as measured by itself (by its
callers when it measures nothing), rps, success rate and p99 (its latency digest is merged for the
nodes drawn only: node_ids and served say which). Every node also gets the connections that reached
it (tcp_rate, tcp_success_rate). The colour is the feed's state when the service has a
feed and the range ends now; otherwise the health of its calls.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from api.servicemap import health
from api.servicemap.edges import OTHERS, UNKNOWN_CALLERS, Inputs, chosen

KINDS = {"svc": "service", "wl": "workload", "ep": "endpoint", "ext": "external", "group": "group"}
STALE_FEED = "the weight feed describes now; this range ended earlier"
MAX_WORKLOADS = 10  # workloads listed per service node (a Deployment's pods are one workload)
TITLES = {UNKNOWN_CALLERS: "unknown callers", OTHERS: "other callers"}


def node_ids(inputs: Inputs, edges: list[dict[str, Any]], max_nodes: int) -> list[str]:
    """The nodes to draw: the edges' ends, then services with a feed as room allows."""
    ids = list(dict.fromkeys(node for edge in edges for node in (edge["source"], edge["target"])))
    for service in sorted(inputs.feeds):
        if len(ids) >= max_nodes:
            break
        if f"svc:{service}" not in ids:
            ids.append(f"svc:{service}")
    return ids


def served(inputs: Inputs, ids: list[str]) -> dict[str, Mapping[str, Any]]:
    """Service name -> the row of calls it served whose figures its node shows (its own side's when it
    measured them), for the service nodes among `ids`."""
    rows = {key[0]: row for key, row in chosen(inputs.callees, ("callee",), "server").items()}
    return {name: rows[name] for node in ids if node.startswith("svc:") and (name := node[4:]) in rows}


def build_nodes(inputs: Inputs, edges: list[dict[str, Any]], ids: list[str],
                served: Mapping[str, Mapping[str, Any]], p99s: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """The nodes `ids` with their figures; p99s: service name -> the p99 of the calls it served."""
    inbound: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for edge in edges:
        inbound[edge["target"]][0] += edge["tcp_attempts"]
        inbound[edge["target"]][1] += edge["tcp_failed"]
    homes = _workloads_by_service(inputs.workloads)
    kinds = {row["workload"]: row["workload_kind"] for row in inputs.workloads}
    grouped = sum(edge.get("grouped_edges", 0) for edge in edges)
    figures = {name: {**row, "p99": p99s.get(name)} for name, row in served.items()}
    return [_node(node, inputs, figures, inbound[node], homes, kinds, grouped) for node in ids]


def _workloads_by_service(rows: list[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        if row["service"] and row["workload"]:
            found[row["service"]][row["workload"]] = row["workload_kind"]
    return {service: [{"name": n, "kind": k} for n, k in sorted(names.items())][:MAX_WORKLOADS]
            for service, names in found.items()}


def _node(node_id: str, inputs: Inputs, served: Mapping[str, Mapping[str, Any]], inbound: list[int],
          homes: Mapping[str, list[dict[str, str]]], kinds: Mapping[str, str], grouped: int) -> dict[str, Any]:
    prefix, _, name = node_id.partition(":")
    node: dict[str, Any] = {"id": node_id, "kind": KINDS[prefix], "name": name, "title": TITLES.get(node_id, name),
                            "subtitle": "",
                            "calls": 0, "rps": None, "success_rate": None, "latency_ms_p99": None,
                            "state": "unknown", "state_why": "", "instances": {}, "workloads": []}
    attempts, failed = inbound
    node["tcp_rate"] = round(attempts / inputs.seconds, 3)
    node["tcp_success_rate"] = round(1 - failed / attempts, 5) if attempts else None
    row = served.get(name) if prefix == "svc" else None
    if row is not None:
        failures = row["errors"] + row["timeouts"]
        node.update(calls=row["calls"], rps=round(row["calls"] / inputs.seconds, 3),
                    success_rate=round(1 - failures / row["calls"], 5) if row["calls"] else None,
                    latency_ms_p99=row["p99"])
    verdict = health.judge({"calls": node["calls"], "failures": row["errors"] + row["timeouts"] if row else 0,
                            "slow_calls": row["slow"] if row else 0, "tcp_attempts": attempts, "tcp_failed": failed})
    node.update(health=verdict.health, why=list(verdict.why), color=verdict.color)
    if prefix == "svc":
        _service(node, inputs, homes.get(name, []))
    else:
        node["subtitle"] = _subtitle(node_id, prefix, name, kinds, grouped)
    return node


def _service(node: dict[str, Any], inputs: Inputs, homes: list[dict[str, str]]) -> None:
    feed = inputs.feeds.get(node["name"])
    state, why, counts = health.feed_state(feed)
    if feed is not None and not inputs.feed_is_current:
        state, why = "unknown", STALE_FEED
    node.update(state=state, state_why=why, instances=counts, workloads=homes)
    if state != "unknown":
        node["color"] = health.COLORS[state]
    total = sum(counts.values())
    node["subtitle"] = f"{state} · {total} instance{'s' * (total != 1)}" if feed is not None else "service"


def _subtitle(node_id: str, prefix: str, name: str, kinds: Mapping[str, str], grouped: int) -> str:
    if node_id == UNKNOWN_CALLERS:
        return "callers that sent no name"
    if node_id == OTHERS:
        return f"{grouped} edges not shown one by one"
    if prefix == "wl":
        return f"workload · {kinds.get(name) or 'cgroup'}"
    return "endpoint (no known service)"
