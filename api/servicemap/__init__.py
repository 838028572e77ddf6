"""The service map as data (GET /v1/map), pure: rollup rows and weight feeds in, nodes and edges out.

edges.py builds caller -> callee edges from calls and callers' TCP connections and bounds them;
nodes.py names and measures the nodes those edges touch; health.py judges and colours both;
nodegraph.py reshapes the map into the frames Grafana's node graph panel reads.
"""

from __future__ import annotations

from typing import Any

from api.servicemap.edges import Inputs, bounded, build_edges
from api.servicemap.nodes import build_nodes

__all__ = ["Inputs", "build_map"]


def build_map(inputs: Inputs, limit: int) -> dict[str, Any]:
    """{nodes, edges, omitted}: at most `limit` edges one by one (plus one grouped edge per kept target),
    nodes sorted by id, edges by (source, target), so the same data always gives the same answer."""
    edges, omitted = bounded(build_edges(inputs), limit, inputs.seconds)
    nodes = build_nodes(inputs, edges, max_nodes=2 * limit + 2)
    return {"nodes": sorted(nodes, key=lambda n: n["id"]),
            "edges": sorted(edges, key=lambda e: (e["source"], e["target"])), "omitted": omitted}
