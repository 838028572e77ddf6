"""The service map as data (GET /v1/map), pure: rollup rows and weight feeds in, nodes and edges out.

edges.py builds caller -> callee edges from calls and callers' TCP connections and bounds them;
nodes.py names and measures the nodes those edges touch; health.py judges and colours both;
nodegraph.py reshapes the map into the frames Grafana's node graph panel reads.

Latency quantiles come last: every edge is built, judged and chosen from counts, then the latency
digests are merged only for the edges drawn one by one and the service nodes drawn (`latencies`, the
store's query), so a map's costliest step follows its `limit`, not the number of pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from api.servicemap.edges import Inputs, bounded, build_edges, measured_pairs
from api.servicemap.nodes import build_nodes, node_ids, served

__all__ = ["CalleeKey", "Inputs", "Latencies", "PairKey", "Quantiles", "build_map"]

PairKey = tuple[str, str, str]  # (caller, callee, side)
CalleeKey = tuple[str, str]  # (callee, side)
Quantiles = tuple[float | None, float | None]  # (p50, p99) ms
# (pairs, callees) -> their (p50, p99): api.queries.map.latencies over the map's range.
Latencies = Callable[[set[PairKey], set[CalleeKey]],
                     tuple[Mapping[PairKey, Quantiles], Mapping[CalleeKey, Quantiles]]]


def build_map(inputs: Inputs, limit: int, latencies: Latencies) -> dict[str, Any]:
    """{nodes, edges, omitted}: at most `limit` edges one by one (plus one grouped edge per kept target),
    nodes sorted by id, edges by (source, target), so the same data always gives the same answer.
    `latencies` is asked once, for the drawn edges' pairs and the drawn service nodes' calls."""
    edges, omitted = bounded(build_edges(inputs), limit, inputs.seconds)
    ids = node_ids(inputs, edges, max_nodes=2 * limit + 2)
    pairs = measured_pairs(inputs.pairs)
    measured = {edge["id"]: pairs[edge["id"]] for edge in edges if edge["id"] in pairs}
    rows = served(inputs, ids)
    by_pair, by_callee = latencies(set(measured.values()), {(name, row["side"]) for name, row in rows.items()})
    for edge in edges:
        if edge["id"] in measured:
            edge["latency_ms_p50"], edge["latency_ms_p99"] = by_pair.get(measured[edge["id"]], (None, None))
    p99s = {name: by_callee.get((name, row["side"]), (None, None))[1] for name, row in rows.items()}
    nodes = build_nodes(inputs, edges, ids, rows, p99s)
    return {"nodes": sorted(nodes, key=lambda n: n["id"]),
            "edges": sorted(edges, key=lambda e: (e["source"], e["target"])), "omitted": omitted}
